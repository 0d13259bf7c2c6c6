#!/usr/bin/env python3
"""Writes a single-layer OCI image archive ("FROM scratch") from local files.

No registry is reachable and no Docker daemon runs, so the node mode's images
(pause, CoreDNS, the busybox test image) are assembled here and imported with
`ctr -n k8s.io images import ARCHIVE`. The output is an OCI image layout in a
tar (what `ctr images import`, `skopeo copy oci-archive:` and `podman load`
read). It is reproducible: fixed timestamps and owners, sorted entries.

Usage:
  mkimage.py OUT.tar IMAGE-NAME [options] ENTRY...

ENTRY:
  SRC=DEST[:MODE]     copy the file SRC to DEST (MODE in octal; default: SRC's)
  DEST->TARGET        symbolic link DEST pointing at TARGET
  DEST/[:MODE]        directory (default mode 755)

Options (image config):
  --entrypoint JSON   e.g. '["/coredns"]'
  --cmd JSON          e.g. '["sh"]'
  --user USER         e.g. 65535:65535
  --env K=V           repeatable
  --workdir DIR
  --label K=V         repeatable
  --ldd               also add the shared libraries (and the dynamic loader)
                      that each copied ELF file needs, at their host paths,
                      as `ldd` lists them: a dynamically linked binary then
                      runs in the otherwise empty image
"""

import argparse
import hashlib
import io
import json
import os
import platform
import re
import stat
import subprocess
import sys
import tarfile

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_mode(text, default):
    return int(text, 8) if text else default


def shared_libraries(entries):
    """Entries for the shared libraries the ELF files among entries need."""
    libs = set()
    for entry in entries:
        if "->" in entry or "=" not in entry:
            continue
        src = entry.split("=", 1)[0]
        with open(src, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        out = subprocess.run(["ldd", src], capture_output=True, text=True).stdout
        for line in out.splitlines():
            # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            # "/lib64/ld-linux-x86-64.so.2 (0x...)"; static binaries list none.
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if m:
                libs.add(m.group(1))
    return [f"{lib}={lib}:755" for lib in sorted(libs)]


def build_layer(entries) -> bytes:
    members = {}  # path -> (TarInfo, data or None)

    def add_parents(path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in members:
                ti = tarfile.TarInfo(d)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                members[d] = (ti, None)

    for entry in entries:
        if "->" in entry:
            dest, target = entry.split("->", 1)
            path = dest.strip("/")
            ti = tarfile.TarInfo(path)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            ti.mode = 0o777
            data = None
        elif "=" in entry:
            src, rest = entry.split("=", 1)
            dest, _, mode = rest.partition(":")
            path = dest.strip("/")
            with open(src, "rb") as f:
                data = f.read()
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mode = parse_mode(mode, stat.S_IMODE(os.stat(src).st_mode))
        elif entry.split(":", 1)[0].endswith("/"):
            dest, _, mode = entry.partition(":")
            path = dest.strip("/")
            ti = tarfile.TarInfo(path)
            ti.type = tarfile.DIRTYPE
            ti.mode = parse_mode(mode, 0o755)
            data = None
        else:
            sys.exit(f"mkimage.py: cannot parse entry {entry!r}")
        add_parents(path)
        members[path] = (ti, data)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(members):
            ti, data = members[path]
            ti.mtime = 0
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("name")
    ap.add_argument("entries", nargs="+")
    ap.add_argument("--entrypoint", type=json.loads)
    ap.add_argument("--cmd", type=json.loads)
    ap.add_argument("--user")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--workdir")
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--ldd", action="store_true")
    a = ap.parse_args()

    entries = list(a.entries)
    if a.ldd:
        entries += shared_libraries(entries)
    layer = build_layer(entries)
    layer_digest = sha256(layer)
    config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": ARCH,
        "os": "linux",
        "config": {"Env": a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "e2e/testcluster/mkimage.py"}],
    }
    if a.entrypoint is not None:
        config["config"]["Entrypoint"] = a.entrypoint
    if a.cmd is not None:
        config["config"]["Cmd"] = a.cmd
    if a.user:
        config["config"]["User"] = a.user
    if a.workdir:
        config["config"]["WorkingDir"] = a.workdir
    if a.label:
        config["config"]["Labels"] = dict(kv.split("=", 1) for kv in a.label)
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": ARCH, "os": "linux"},
                "annotations": {
                    # containerd's import takes the full name from this one;
                    "io.containerd.image.name": a.name,
                    # OCI tools (skopeo, podman) from this one.
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    index_bytes = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()

    files = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", index_bytes),
    ]
    for blob in (config_bytes, manifest_bytes, layer):
        files.append(("blobs/sha256/" + sha256(blob).split(":", 1)[1], blob))

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tar.addfile(ti)
        for path, data in files:
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mode = 0o644
            tar.addfile(ti, io.BytesIO(data))
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
