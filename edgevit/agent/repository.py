"""The agent's model repository: artifact folders on disk, loaded into runtime sessions.

An upload (``RepositoryModelLoad`` with ``file:<path>`` parameters) is an artifact folder sent
file by file. Nothing of it is trusted, and nothing is installed until all of it is checked:

1. the model name is a plain folder name; every path is relative, without ``..``, absolute
   parts, hidden parts or backslashes (:func:`edgevit.artifact.relative_file_problem`); the
   total is within ``max_upload_bytes`` and the disk has room;
2. ``manifest.json`` parses and passes :func:`edgevit.artifact.manifest_problems`; the other
   files are exactly the model file (or the files under an ``.mlpackage``) with the sizes the
   manifest lists, and match their ``sha256:<path>`` digests when the client sent them;
3. a backend of this agent runs the model file's type (``edgevit.runtime`` resolves it);
4. the files are written into a staging folder inside the repository, loaded with
   ``edgevit.runtime.load`` and run once on zeros;
5. only then is the staging folder renamed into place (replacing an older version, whose
   session is closed when its last in-flight request is done).

A refused or interrupted upload leaves no folder behind; staging folders left by a killed
agent are removed when it starts. No file is ever unpickled or imported: the backends parse
ONNX, TFLite and Core ML protobuf/flatbuffer files as data.

This module knows nothing of gRPC: it raises :class:`~edgevit.errors.AgentError` with the
status name, and the servicer turns it into the status.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.artifact import MANIFEST_NAME, Manifest, artifact_digest, relative_file_problem
from edgevit.errors import AgentError, ArtifactError, EdgeVitError, MissingDependencyError

log = logging.getLogger("edgevit.agent")

#: a model name is a folder name: letters, digits, '.', '_', '-'; not starting with '.'
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_FILES = 1024
MAX_MANIFEST_BYTES = 4 << 20
#: free disk space kept beyond an upload's own size
DISK_MARGIN_BYTES = 64 << 20
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"


def check_model_name(name: Any) -> str:
    """``name`` if it is a valid model (folder) name; AgentError INVALID_ARGUMENT otherwise."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise AgentError("INVALID_ARGUMENT", f"model name {str(name)[:80]!r} is not allowed; use 1-128 letters, digits, "
                                             "'.', '_' or '-' (not starting with '.'): the artifact's folder name")
    return name


@dataclass
class Duration:
    """A cumulative count and nanoseconds, as Triton's ``StatisticDuration``."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += int(ns)


@dataclass
class ModelStats:
    """What ``ModelStatistics`` reports for one model (cumulative since it was loaded)."""

    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


class LoadedModel:
    """One artifact loaded into a runtime session, with its statistics and in-flight count.

    ``run`` may be called from several threads: backends other than onnxruntime are run one
    call at a time (a TFLite interpreter is not thread-safe).
    """

    def __init__(self, name: str, folder: Path, session: Any, digest: str, load_seconds: float) -> None:
        self.name = name
        self.folder = folder
        self.session = session
        self.manifest: Manifest = session.manifest
        self.digest = digest
        self.load_seconds = load_seconds
        self.bytes = sum(self.manifest.files.values()) if self.manifest.files else 0
        self.stats = ModelStats()
        self.stats_lock = threading.Lock()
        self._run_lock = None if session.backend == "onnxruntime" else threading.Lock()
        self._inflight = 0
        self._retired = False
        self._state = threading.Lock()

    @property
    def backend(self) -> str:
        return self.session.backend

    def acquire(self) -> bool:
        """Count one more request in flight; False once the model is retired (unloaded/replaced)."""
        with self._state:
            if self._retired:
                return False
            self._inflight += 1
            return True

    def release(self) -> None:
        with self._state:
            self._inflight -= 1
            close = self._retired and self._inflight == 0
        if close:
            self.session.close()

    def retire(self) -> None:
        """No new requests; the session closes when the last in-flight one is done."""
        with self._state:
            self._retired = True
            close = self._inflight == 0
        if close:
            self.session.close()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._run_lock is None:
            return self.session.run(feeds)
        with self._run_lock:
            return self.session.run(feeds)


class Repository:
    """Artifact folders under ``root``, each loaded with the runtime.

    Args:
        root: the repository folder (created if missing).
        threads: CPU threads per loaded model (None: the backend's default).
        max_upload_bytes: the largest upload accepted.
    """

    def __init__(self, root: str | Path, threads: int | None = None, max_upload_bytes: int = 256 << 20,
                 spin: bool | None = None) -> None:
        self.root = Path(root)
        self.threads = threads
        self.spin = spin
        self.max_upload_bytes = max_upload_bytes
        self.models: dict[str, LoadedModel] = {}
        self.failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- at start ------------------------------------------------------------------------------

    def load_all(self) -> None:
        """Remove staging leftovers, then load every artifact folder in the repository.

        A folder that does not load is kept on disk, listed by ``index()`` as UNAVAILABLE with
        the reason, and logged; the others still load."""
        for leftover in self.root.glob(".*"):
            if leftover.name.startswith((STAGING_PREFIX, TRASH_PREFIX)) and leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
                log.info("removed %s left by an interrupted upload", leftover.name)
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                self.load_existing(folder.name)
            except EdgeVitError as exc:
                log.error("could not load %s from the repository: %s", folder.name, exc)

    def load_existing(self, name: str) -> LoadedModel:
        """Load (or reload) the artifact folder ``root/name`` that is already on disk."""
        check_model_name(name)
        folder = self.root / name
        if not (folder / MANIFEST_NAME).is_file():
            raise AgentError("NOT_FOUND", f"no artifact {name!r} in the repository; upload it with its files "
                                          "(edgevit deploy, or load_model(name, files=...))")
        try:
            model = self._open(name, folder)
        except AgentError as exc:
            with self._lock:
                self.failed[name] = str(exc)
            raise
        self._swap(name, model)
        return model

    # -- uploads -------------------------------------------------------------------------------

    def install(self, name: str, files: dict[str, bytes], digests: dict[str, str] | None = None) -> LoadedModel:
        """Check an uploaded artifact, stage it, load and run it once, then put it in place."""
        check_model_name(name)
        manifest = check_upload(files, digests or {}, self.max_upload_bytes)
        needed = sum(len(data) for data in files.values()) + DISK_MARGIN_BYTES
        free = shutil.disk_usage(self.root).free
        if free < needed:
            raise AgentError("RESOURCE_EXHAUSTED", f"the repository's disk has {free >> 20} MB free; {name!r} needs "
                                                   f"{needed >> 20} MB (with a {DISK_MARGIN_BYTES >> 20} MB margin)")
        _resolve_backend(manifest)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}.", dir=self.root))
        try:
            staging.chmod(0o755)
            for relative, data in files.items():
                _write_new(staging / relative, data)
            model = self._open(name, staging)
            final = self.root / name
            with self._lock:
                old_folder = None
                if final.exists():
                    old_folder = Path(tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{name}.", dir=self.root))
                    os.replace(final, old_folder / name)
                os.replace(staging, final)
                model.folder = final
                self.failed.pop(name, None)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._swap(name, model)
        if old_folder is not None:
            shutil.rmtree(old_folder, ignore_errors=True)
        return model

    def unload(self, name: str) -> None:
        """Stop serving ``name`` and delete its folder (an unload undoes an upload)."""
        check_model_name(name)
        with self._lock:
            model = self.models.pop(name, None)
            self.failed.pop(name, None)
            folder = self.root / name
            if model is None and not folder.exists():
                raise AgentError("NOT_FOUND", f"no model {name!r} to unload; the repository has "
                                              f"{_names(self.models)}")
            if folder.exists():
                trash = Path(tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{name}.", dir=self.root))
                os.replace(folder, trash / name)
            else:
                trash = None
        if model is not None:
            model.retire()
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    # -- lookups -------------------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> LoadedModel:
        model = self.models.get(name)
        if model is None:
            raise AgentError("NOT_FOUND", f"unknown model {str(name)[:128]!r}; loaded: {_names(self.models)}")
        if version not in ("", "1"):
            raise AgentError("NOT_FOUND", f"model {name!r} has only version 1, not {str(version)[:32]!r}")
        return model

    def index(self) -> list[tuple[str, str, str]]:
        """``(name, state, reason)`` for every folder in the repository and every loaded model."""
        with self._lock:
            names = set(self.models) | set(self.failed)
            names |= {p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")}
            rows = []
            for name in sorted(names):
                if name in self.models:
                    rows.append((name, "READY", ""))
                else:
                    rows.append((name, "UNAVAILABLE", self.failed.get(name, "not loaded")))
            return rows

    def close(self) -> None:
        with self._lock:
            models, self.models = list(self.models.values()), {}
        for model in models:
            model.retire()

    # -- internals -----------------------------------------------------------------------------

    def _open(self, name: str, folder: Path) -> LoadedModel:
        """Load ``folder`` with the runtime and run it once on zeros (a model that cannot is refused).

        Error messages name the model, not the agent's folders (a remote caller has no use for them)."""
        try:
            return self._load(name, folder)
        except AgentError as exc:
            message = str(exc.args[0]).replace(str(folder.resolve()), name).replace(str(folder), name)
            raise AgentError(exc.code, message) from exc.__cause__

    def _load(self, name: str, folder: Path) -> LoadedModel:
        from edgevit.runtime import load, options_for

        start = time.perf_counter()
        try:
            session = load(folder, threads=self.threads, **options_for(folder, spin=self.spin))
        except MissingDependencyError as exc:
            raise AgentError("FAILED_PRECONDITION", f"this agent cannot run {name!r}: {exc}") from exc
        except ArtifactError as exc:
            raise AgentError("INVALID_ARGUMENT", f"{name!r} is not a usable artifact: {exc}") from exc
        except EdgeVitError as exc:
            raise AgentError("INVALID_ARGUMENT", f"{name!r} could not be loaded: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - a backend's parser failing on a corrupt file
            raise AgentError("INVALID_ARGUMENT", f"{name!r} could not be loaded (is the model file corrupt?): "
                                                 f"{type(exc).__name__}: {str(exc).strip()[:300]}") from exc
        try:
            session.run({spec.name: np.zeros([d or 1 for d in spec.shape], spec.dtype) for spec in session.input_specs})
        except Exception as exc:  # noqa: BLE001 - a model that cannot run is refused, whatever the backend says
            session.close()
            raise AgentError("INVALID_ARGUMENT", f"{name!r} loaded but could not run on zeros: "
                                                 f"{type(exc).__name__}: {str(exc).strip()[:300]}") from exc
        return LoadedModel(name, folder, session, artifact_digest(folder), time.perf_counter() - start)

    def _swap(self, name: str, model: LoadedModel) -> None:
        with self._lock:
            old = self.models.get(name)
            self.models[name] = model
            self.failed.pop(name, None)
        if old is not None:
            old.retire()


def check_upload(files: dict[str, bytes], digests: dict[str, str], max_bytes: int) -> Manifest:
    """The manifest of an uploaded artifact, once every file name, size and digest is checked.

    Raises:
        AgentError: INVALID_ARGUMENT (names the file and the rule) or RESOURCE_EXHAUSTED (too big).
    """
    if not files:
        raise AgentError("INVALID_ARGUMENT", "the upload has no files; send the artifact folder's files as "
                                             "'file:<relative path>' parameters (manifest.json and the model file)")
    if len(files) > MAX_FILES:
        raise AgentError("INVALID_ARGUMENT", f"the upload has {len(files)} files; at most {MAX_FILES} are accepted")
    total = sum(len(data) for data in files.values())
    if total > max_bytes:
        raise AgentError("RESOURCE_EXHAUSTED", f"the upload is {total / 2**20:.1f} MB; this agent accepts at most "
                                               f"{max_bytes / 2**20:.0f} MB (--max-upload-mb)")
    for relative in files:
        problem = relative_file_problem(relative, "file")
        if problem:
            raise AgentError("INVALID_ARGUMENT", problem)
    folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    clash = sorted(folders & set(files))
    if clash:
        raise AgentError("INVALID_ARGUMENT", f"{clash[0]!r} is sent both as a file and as a folder")
    for relative, digest in digests.items():
        if relative not in files:
            raise AgentError("INVALID_ARGUMENT", f"a sha256 is given for {relative[:128]!r}, which is not uploaded")
        if hashlib.sha256(files[relative]).hexdigest() != str(digest).lower():
            raise AgentError("INVALID_ARGUMENT", f"{relative!r} does not match its sha256 (corrupted in transit?)")
    if MANIFEST_NAME not in files:
        raise AgentError("INVALID_ARGUMENT", f"the upload has no {MANIFEST_NAME}; send the whole artifact folder")
    raw = files[MANIFEST_NAME]
    if len(raw) > MAX_MANIFEST_BYTES:
        raise AgentError("INVALID_ARGUMENT", f"{MANIFEST_NAME} is {len(raw)} bytes; at most {MAX_MANIFEST_BYTES}")
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ArtifactError("expected a JSON object")
        manifest = Manifest.from_dict(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AgentError("INVALID_ARGUMENT", f"{MANIFEST_NAME} is not valid JSON: {exc}") from exc
    except ArtifactError as exc:
        raise AgentError("INVALID_ARGUMENT", f"{MANIFEST_NAME}: {exc}") from exc
    model_file = manifest.model_file
    listed = dict(manifest.files)
    for relative, data in files.items():
        if relative == MANIFEST_NAME:
            continue
        if relative not in listed and relative != model_file and not relative.startswith(model_file + "/"):
            raise AgentError("INVALID_ARGUMENT", f"{relative!r} is neither the model file {model_file!r} nor listed "
                                                 "in the manifest's files")
        if relative in listed and listed[relative] != len(data):
            raise AgentError("INVALID_ARGUMENT", f"{relative!r} is {len(data)} bytes; the manifest says "
                                                 f"{listed[relative]}")
    missing = sorted(set(listed) - set(files))
    if missing:
        raise AgentError("INVALID_ARGUMENT", f"the manifest lists {missing[0]!r} but it was not uploaded")
    if not any(r == model_file or r.startswith(model_file + "/") for r in files):
        raise AgentError("INVALID_ARGUMENT", f"the model file {model_file!r} named by the manifest was not uploaded")
    return manifest


def _resolve_backend(manifest: Manifest) -> None:
    from edgevit.runtime import BACKENDS
    from edgevit.runtime.session import resolve_backend

    try:
        resolve_backend(Path(manifest.model_file), "auto")
    except MissingDependencyError as exc:
        raise AgentError("FAILED_PRECONDITION", f"this agent cannot run {manifest.model_file!r} files: {exc}") from exc
    except EdgeVitError as exc:
        raise AgentError("INVALID_ARGUMENT", f"no backend of this agent ({', '.join(BACKENDS.names())}) runs "
                                             f"{manifest.model_file!r}: {exc}") from exc


def _write_new(path: Path, data: bytes) -> None:
    """Write a new regular file (never through an existing file or link)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _names(models: dict[str, Any]) -> str:
    names = sorted(models)
    if not names:
        return "none"
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
