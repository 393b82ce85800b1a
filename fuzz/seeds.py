#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets (fuzz/corpus/<target>/).

The seeds are small, hand-made inputs that reach each parser's main paths:
libFuzzer starts from them and mutates. Run it again after changing a
seed here (standard library only); the files it writes are committed.
Inputs the fuzzers found (crashes fixed since) live beside them under
names starting `regression-` and are not written here.

    python3 fuzz/seeds.py
"""

import io
import json
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- slipway.toml

TOML = {
    "python": """name = "hello-python"
type = "python"

[run]
command = "python3 app.py"
port = 8000
env = { GREETING = "hello" }
stop_timeout = "5s"

[health]
http = "/health"
timeout = "20s"
grace = "1s"
""",
    "generic": """type = "generic"

[build]
command = "sh build.sh"
timeout = "15m"
include = ["dist", "bin/start"]
watch = ["libs/shared/", "proto/*.proto"]
python = ">=3.11"
node = "22"

[run]
command = "bin/start --port $PORT"
user = "1000:1000"
shared = ["uploads", "config/local.yml"]

[health]
command = "curl -fs localhost:$PORT/"
interval = "1s"
bake = "1m 30s"
""",
    "processes": """[run]
command = "gunicorn app:app"
port = 8000

[health]
http = "/health"
expect = "ok"

[processes.worker]
command = "python3 worker.py"
count = 2

[processes.metrics]
command = "./metrics"
port = 9100
health = { tcp = true }

[release]
command = "python3 manage.py migrate"
timeout = "2m"

[hooks]
pre_stop = "./drain"
post_start = "./warm"
timeout = "30s"
""",
    "unknown-key": '[run]\ncommand = "x"\nprot = 80\n',
    "bad-duration": '[run]\ncommand = "x"\n[health]\nbake = "a while"\n',
    "no-run": 'name = "x"\n',
}
for name, text in TOML.items():
    write("slipway_toml", name, text)

# ---------------------------------------------------------------- bus messages

ARTIFACT = {
    "url": "http://127.0.0.1:8080/artifacts/hello/hello-1-abcdef0.tar.gz",
    "sha256": "0" * 64,
    "size": 10,
    "signature": "c2lnbmF0dXJl",
}
RELEASE = {
    "deploy_id": 7,
    "app": "hello",
    "version": "1-abcdef0",
    "artifact": ARTIFACT,
    "config_version": 2,
    "action": "deploy",
}
BUS = {
    "deploy": {
        "kind": "deploy",
        **RELEASE,
        "target": {"cluster": "local", "hosts": "web-[0-9]+"},
        "issued_at": 1,
    },
    "deploy-batch": {
        "kind": "deploy",
        **RELEASE,
        "artifact": {**ARTIFACT, "index": {"url": "http://x/i.json", "sha256": "1" * 64, "size": 3, "signature": "c2ln"}},
        "action": "restart",
        "target": {"cluster": "local", "hosts": ".*", "only": ["web-1", "web-3"]},
        "issued_at": 1,
    },
    "release-phase": {
        "kind": "release_phase",
        **RELEASE,
        "target": {"cluster": "local", "hosts": ".*", "only": ["web-1"]},
        "issued_at": 1,
    },
    "logs": {
        "kind": "logs",
        "request_id": 3,
        "app": "hello",
        "offset": 100,
        "max_bytes": 65536,
        "target": {"cluster": "local", "hosts": "web-1"},
    },
    "sync": {"kind": "sync"},
    "unknown": {"kind": "reboot", "x": [1, 2]},
}
for name, msg in BUS.items():
    write("bus_message", name, json.dumps(msg))

# ---------------------------------------------------------------- host selectors

SELECTORS = {
    "range": "local-[12]\nlocal-1",
    "all": ".*\nweb-1",
    "alternation": "web-1|db-[0-9]+\ndb-12",
    "flags": "(?i)WEB-(?:a|b)\nweb-b",
    "extended": "(?x) web - \\d{1,3}  # comment\nweb-42",
    "unicode": "\\p{L}+-\\d\nhöst-1",
    "repeat": "(a{2,5}){1,3}b?\naaaaaa",
}
for name, text in SELECTORS.items():
    write("host_selector", name, text)

# ---------------------------------------------------------------- webhooks
# One byte of settings (fuzz_targets/webhook.rs), then the body.
# bits 0-1: 0 GitHub, 1 GitLab, 2 Gitea; 4: signed; 8: a root; 16: watch
# paths known; 32: the app builds `dev`.

A = "1" * 40
B = "2" * 40
GITHUB = {
    "ref": "refs/heads/main",
    "before": A,
    "after": B,
    "forced": False,
    "repository": {
        "clone_url": "https://github.com/org/repo.git",
        "ssh_url": "git@github.com:org/repo.git",
        "html_url": "https://github.com/org/repo",
    },
    "head_commit": {"id": B, "message": "services/a: fix"},
    "commits": [
        {"id": B, "message": "services/a: fix", "added": ["services/a/new.py"],
         "modified": ["libs/shared/x.py"], "removed": []},
    ],
}
GITLAB = {
    "object_kind": "push",
    "ref": "refs/heads/main",
    "before": A,
    "after": B,
    "project": {
        "git_http_url": "https://github.com/org/repo.git",
        "git_ssh_url": "git@github.com:org/repo.git",
        "web_url": "https://github.com/org/repo",
    },
    "total_commits_count": 1,
    "commits": [
        {"id": B, "message": "docs [skip deploy]", "added": [], "modified": ["README.md"],
         "removed": ["old.txt"]},
    ],
}
GITEA = {
    "ref": "refs/heads/dev",
    "before": "0" * 40,
    "after": B,
    "repository": {"clone_url": "https://github.com/org/repo", "ssh_url": "git@github.com:org/repo.git"},
    "total_commits": 1,
    "commits": [{"id": B, "message": "m", "added": ["proto/api.proto"], "modified": [], "removed": []}],
}
TAG = {"ref": "refs/tags/v1", "before": A, "after": B, "repository": {"clone_url": "https://github.com/org/repo"}}
for name, (settings, body) in {
    "github-push": (4 | 8 | 16, GITHUB),
    "github-unsigned": (0, GITHUB),
    "gitlab-push": (1 | 4 | 8, GITLAB),
    "gitea-new-branch": (2 | 4 | 8 | 16 | 32, GITEA),
    "github-tag": (4, TAG),
}.items():
    write("webhook", name, bytes([settings]) + json.dumps(body).encode())

# ---------------------------------------------------------------- tarballs
# Plain tar (the target gzips it), GNU format: 512-byte blocks, so each seed
# is a few KiB. The target sets the checksums right itself.

MANIFEST = {
    "app": "hello",
    "version": "1-abcdef0",
    "commit": "abcdef0" * 5 + "abcde",
    "build_type": "generic",
    "built_at": 0,
    "run": {"command": "sleep 1000", "port": None, "env": {}, "stop_timeout_ms": 1000},
    "health": {"check": {"kind": "running"}, "timeout_ms": 30000, "grace_ms": 2000},
    "files": 2,
    "content_bytes": 12,
}


def tar(entries, manifest=MANIFEST):
    """entries: (kind, name, data_or_target[, mode]) with kind in
    file, dir, sym, hard, fifo, char."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        def add(kind, name, arg=b"", mode=None):
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
            if kind == "file":
                ti.size = len(arg)
                t.addfile(ti, io.BytesIO(arg))
                return
            ti.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "char": tarfile.CHRTYPE,
            }[kind]
            if kind in ("sym", "hard"):
                ti.linkname = arg
            t.addfile(ti)

        if manifest is not None:
            add("dir", ".slipway/")
            add("file", ".slipway/manifest.json", json.dumps(manifest).encode())
        for e in entries:
            add(*e)
    data = buf.getvalue()
    # tarfile pads to 10 KiB records; two zero blocks end the archive.
    end = len(data)
    while end >= 512 and not any(data[end - 512:end]):
        end -= 512
    return data[:end] + bytes(1024)


TARS = {
    "release": [
        ("dir", "./"),
        ("file", "app.py", b"print('hi')\n", 0o755),
        ("dir", "static/"),
        ("file", "static/a.txt", b"abc"),
        ("sym", "current", "app.py"),
        ("sym", "static/up", "../app.py"),
        ("hard", "app2.py", "app.py"),
    ],
    "dotdot": [("file", "../escape", b"x")],
    "absolute": [("file", "/tmp/slipway-fuzz-absolute", b"x")],
    "symlink-escape": [("sym", "l", "../../.."), ("file", "l/x", b"x")],
    "symlink-absolute": [("sym", "l", "/etc"), ("file", "l/passwd", b"x")],
    "symlink-chain": [("sym", "s", "."), ("sym", "t", "s/.."), ("dir", "t", b"", 0o777), ("file", "t/x", b"x")],
    "symlink-then-dir": [("sym", "d", "sub"), ("dir", "sub/"), ("dir", "d/", b"", 0o700)],
    "hardlink-escape": [("hard", "h", "../archive.tar.gz")],
    "hardlink-via-symlink": [("sym", "s", "."), ("hard", "h", "s/.slipway/manifest.json")],
    "hardlink-to-symlink": [("sym", "a/l", "../x"), ("hard", "b", "a/l")],
    "overwrite-symlink": [("sym", "f", "app.py"), ("file", "f", b"new"), ("file", "app.py", b"old")],
    "special": [("fifo", "p"), ("char", "c")],
    "too-much": [("file", "big", b"x" * 600)],
    "manifest-late": [("file", "a", b"hello world!")],
    "long-name": [("file", "d/" + "n" * 120, b"x"), ("sym", "l" * 110, "d/" + "n" * 120)],
}
for name, entries in TARS.items():
    manifest = None if name == "manifest-late" else MANIFEST
    data = tar(entries, manifest)
    if name == "manifest-late":
        data = tar(entries + [("dir", ".slipway/"), ("file", ".slipway/manifest.json", json.dumps(MANIFEST).encode())], None)
    write("extract", name, data)
