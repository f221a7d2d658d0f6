from atlas_align.cli.main import main

main()
