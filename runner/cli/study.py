"""What `run`, `plan` and `status` share: the manifest and its folders as options, and the
checks made, in this order, before anything else: the manifest, its results folder, and
(after the command's own flags) the plan with the data's checksums."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

from runner.errors import InputError


def study_arguments(p: argparse.ArgumentParser) -> None:
    """The manifest and its folders, for the commands that read a study."""
    p.add_argument("manifest", help="the study's TOML manifest, e.g. manifests/demo.toml")
    p.add_argument("--data-dir", default="data",
                   help="prepared data with its SHA256SUMS (default: data)")
    p.add_argument("--results-dir", default=None,
                   help="the study's results folder (default: [study] results in the "
                        "manifest, i.e. results/<study name>)")


def open_study(args: argparse.Namespace, *, write: bool):
    """The manifest and its results folder (``write``: `run` writes there), each checked."""
    from runner.study.manifest import load_manifest

    manifest = load_manifest(args.manifest)
    return manifest, results_dir(args, manifest, write=write)


def study_plan(manifest, data_dir):
    """The plan; the data folder and its SHA256SUMS are bad input here, before any job is
    claimed."""
    from runner.ml.lora import encoder_lora_shape  # torch only for an adapter_match
    from runner.study.plan import build_plan

    return build_plan(manifest, data_dir, require_data=True, encoder_shape=encoder_lora_shape)


def results_dir(args: argparse.Namespace, manifest, *, write: bool) -> Path:
    """The results folder, checked before any work: one that cannot be a folder we write into
    (under a file, in /proc), an empty --results-dir, a link that leads nowhere (dangling,
    a loop) and the data folder itself (or a folder holding or inside it) are bad input,
    named where it was given: --results-dir or the manifest's `results` line."""
    from mtl_contract.files import folder_problem  # the one output-folder check (stats' too)

    if args.results_dir is not None and not args.results_dir.strip():
        raise InputError(None, "empty path (leave --results-dir out for the manifest's "
                         "[study] results)", where="--results-dir")
    path = Path(args.results_dir or manifest.study.results)
    problem = _path_problem(path) or folder_problem(path, write=write) \
        or _data_overlap(path, Path(args.data_dir))
    if problem is None:
        return path
    if args.results_dir is not None:
        raise InputError(str(path), problem, where="--results-dir")
    raise InputError(manifest.path, f"{path}: {problem}", where="study.results",
                     line=manifest.study.results_line)


def _path_problem(path) -> str | None:
    """A results path that cannot be resolved: a symbolic link loop or a dangling link on
    the way (or at its end)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        return None   # created by `run`
    except NotADirectoryError:
        return None   # under a file: folder_problem names the file
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (too many levels of symbolic links)"
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _data_overlap(path, data_dir) -> str | None:
    """The results folder must not be the data folder, inside it, or around it: the runner
    writes job folders and its ledger there."""
    results, data = os.path.realpath(path), os.path.realpath(data_dir)
    if results == data:
        return f"is the data folder ({data_dir}); give the study its own results folder"
    if results.startswith(data + os.sep):
        return f"lies inside the data folder ({data_dir}); give the study its own folder"
    if data.startswith(results + os.sep):
        return f"holds the data folder ({data_dir}); give the study its own folder"
    return None
