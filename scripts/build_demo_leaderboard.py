"""Rebuild the published leaderboard/ from real offline models, through a real registry server.

Aligns SmolLM2-135M-Instruct (layers 10 and 20) to the built-in atlas, fits several methods from
each single statistics pass (procrustes, covariance, correlation, and the random_rotation chance
control), pushes every artifact to a throw-away registry server, and runs the same
`leaderboard build --verify` path CI runs, so every row is recomputed by the verifier.

    python scripts/build_demo_leaderboard.py --samples 1500 --verify-samples 500 --out leaderboard
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1500)
    parser.add_argument("--verify-samples", type=int, default=500)
    parser.add_argument("--layers", default="10,20")
    parser.add_argument("--methods", default="procrustes,covariance,correlation,random_rotation")
    parser.add_argument("--out", default=str(REPO / "leaderboard"))
    args = parser.parse_args()

    from tests.registry_server_fixture import start_registry_server, stop_registry_server

    root = Path(tempfile.mkdtemp(prefix="atlas-align-board-"))
    server = start_registry_server(root / "registry", lfs_threshold=None)
    os.environ.update(HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")
    try:
        from atlas_align.alignment.pipeline import _wrap, load_atlas_space, load_subject
        from atlas_align.corpus.sources import CorpusConfig, iter_samples
        from atlas_align.fit.collect import collect_statistics
        from atlas_align.fit.methods import METHODS
        from atlas_align.leaderboard.collect import collect
        from atlas_align.leaderboard.render import render
        from atlas_align.leaderboard.verify import verify_folder
        from atlas_align.models.activations import ActivationExtractor, hidden_size, resolve_hookpoint
        from atlas_align.refs import CorpusRef, SubjectRef
        from atlas_align.registry.hub import push_folder

        api = server.api()
        model, tokenizer, model_id = load_subject("smollm2")
        atlas = load_atlas_space("builtin", batch_size=16, max_length=128)
        corpus = CorpusConfig()
        methods = args.methods.split(",")
        for layer in [int(x) for x in args.layers.split(",")]:
            start = time.perf_counter()
            hook = resolve_hookpoint(model, layer)
            subject = ActivationExtractor(model, tokenizer, hook, batch_size=16, max_length=128)
            stats = collect_statistics(subject, atlas, iter_samples(corpus, "train"), n_samples=args.samples,
                                       d_s=hidden_size(model), with_gram=any(METHODS.get(m).needs_gram for m in methods))
            print(f"layer {layer}: statistics over {stats.n} texts in {time.perf_counter() - start:.0f}s", flush=True)
            subject_ref = SubjectRef(model_id=model_id, hookpoint=hook.path, layer=layer)
            corpus_ref = CorpusRef(source=corpus.source, n_samples=stats.n, window_words=corpus.window_words,
                                   heldout_fraction=corpus.heldout_fraction, split_salt=corpus.split_salt)
            for method in methods:
                folder = root / f"smollm2-l{layer}-{method}"
                _wrap(method, {}, stats, subject_ref, atlas, corpus_ref).save_pretrained(folder)
                push_folder(api, folder, f"{server.user}/smollm2-135m-l{layer}-{method.replace('_', '-')}", tag="v1")
        board = collect(api, verify=True, cache_dir=root / "cache",
                        verifier=functools.partial(verify_folder, samples=args.verify_samples))
        board = board.model_copy(update={"registry": "atlas-align registry server (scripts/build_demo_leaderboard.py)"})
        paths = render(board, args.out)
        print("wrote", *paths.values())
        subprocess.run([sys.executable, "-m", "atlas_align.cli.main", "leaderboard", "show", "--path", str(paths["json"])], check=False)
    finally:
        stop_registry_server(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
