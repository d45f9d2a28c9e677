#!/usr/bin/env python3
"""Deterministic OCI image layout of vulngate (called by scripts/build-image.sh).

  oci-image.py --output DIR --binary PATH --arch amd64 --version V --revision SHA --epoch N
               --source URL --license SPDX DEB...      -> writes DIR, prints the manifest digest
  oci-image.py --sbom CDX.json --epoch N --digest D --version V DEB...
                                                       -> the SBOM with the Debian packages, stdout

Layer 1: the Debian packages' files (read from each .deb's data.tar with `dpkg-deb --fsys-tarfile`)
minus docs, man pages, lintian overrides, iconv modules and every executable outside the dynamic loader and
shared libraries (no shell, no package manager: the build fails if one is left), plus
/etc/passwd, /etc/group (nonroot 65532), the CA bundle, /etc/os-release, dpkg status.d entries,
/tmp and /var/lib/vulngate. Layer 2: /usr/bin/vulngate. Every entry: mtime = --epoch, owner
numeric (0, or 65532 for the data directory), sorted by path; GNU tar format; gzip (level 6) with mtime 0
and no file name. JSON is compact with sorted keys. Same inputs, same bytes.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

NONROOT = 65532
DROP_PREFIXES = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/lintian/",
    "usr/share/locale/",
    "usr/sbin/",
    "usr/bin/",
    "sbin/",
    "bin/",
    "etc/init.d/",
    "etc/cron.daily/",
    # iconv modules: vulngate converts no character sets
    "usr/lib/x86_64-linux-gnu/gconv/",
    "usr/lib/aarch64-linux-gnu/gconv/",
)
OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""


def die(msg):
    print(f"[oci-image] error: {msg}", file=sys.stderr)
    sys.exit(1)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def deb_field(deb, field):
    return subprocess.run(
        ["dpkg-deb", "-f", deb, field], check=True, capture_output=True, text=True
    ).stdout.strip()


def deb_control(deb):
    return subprocess.run(["dpkg-deb", "-f", deb], check=True, capture_output=True).stdout


def keep(path, package):
    """Whether a file of a Debian package goes into the image."""
    if path.startswith("usr/share/doc/"):
        # the copyright file of every package stays (licence terms)
        return path == f"usr/share/doc/{package}/copyright" or path == f"usr/share/doc/{package}"
    return not any(path.startswith(p) or path + "/" == p for p in DROP_PREFIXES)


class Layer:
    """Tar entries keyed by path, written sorted."""

    def __init__(self, epoch):
        self.epoch = epoch
        self.entries = {}  # path -> (TarInfo, bytes or None)

    def _info(self, path, kind, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(path)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = self.epoch
        return ti

    def parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = (self._info(d, tarfile.DIRTYPE, 0o755), None)

    def dir(self, path, mode=0o755, uid=0, gid=0):
        self.parents(path)
        self.entries[path] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), None)

    def file(self, path, data, mode=0o644):
        self.parents(path)
        ti = self._info(path, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.entries[path] = (ti, data)

    def member(self, m, data):
        """A member of a package's data.tar, normalised."""
        self.parents(m.name)
        ti = self._info(m.name, m.type, m.mode & 0o7777)
        if m.issym() or m.islnk():
            ti.linkname = m.linkname.lstrip("./") if m.islnk() else m.linkname
        if data is not None:
            ti.size = len(data)
        old = self.entries.get(m.name)
        if old is not None and not (old[0].isdir() and ti.isdir()):
            if old[1] != data or old[0].type != ti.type:
                die(f"two packages ship {m.name} differently")
        self.entries[m.name] = (ti, data)

    def write(self, path):
        """Writes the gzip layer; returns (digest, size, diff_id)."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name in sorted(self.entries):
                ti, data = self.entries[name]
                tar.addfile(ti, io.BytesIO(data) if data is not None else None)
        tar_bytes = raw.getvalue()
        gz = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=6) as g:
            g.write(tar_bytes)
        blob = gz.getvalue()
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        write_blob(path, blob)
        return digest, len(blob), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def write_blob(out, blob):
    digest = hashlib.sha256(blob).hexdigest()
    p = os.path.join(out, "blobs", "sha256", digest)
    with open(p, "wb") as f:
        f.write(blob)
    return "sha256:" + digest


def base_layer(debs, epoch):
    layer = Layer(epoch)
    packages = []
    for deb in debs:
        pkg = deb_field(deb, "Package")
        packages.append((pkg, deb_field(deb, "Version"), deb))
        tar_bytes = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", deb], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for m in tar.getmembers():
                name = m.name.lstrip("./").rstrip("/")
                if not name or not keep(name, pkg):
                    continue
                m.name = name
                data = tar.extractfile(m).read() if m.isreg() else None
                if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
                    die(f"{deb}: unexpected entry type for {name}")
                layer.member(m, data)
        # what scanners read to list the image's Debian packages (as distroless does)
        layer.file(f"var/lib/dpkg/status.d/{pkg}", deb_control(deb).rstrip(b"\n") + b"\nStatus: install ok installed\n")
    # TLS roots: the bundle update-ca-certificates would generate, from the package's certificates
    certs = sorted(
        n for n, (ti, _) in layer.entries.items()
        if n.startswith("usr/share/ca-certificates/") and n.endswith(".crt") and ti.isreg()
    )
    if not certs:
        die("no certificates in the ca-certificates package")
    bundle = b"".join(layer.entries[n][1].rstrip(b"\n") + b"\n" for n in certs)
    layer.file("etc/ssl/certs/ca-certificates.crt", bundle)
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    layer.file("etc/group", b"root:x:0:\nnonroot:x:65532:\n")
    layer.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.file("etc/os-release", OS_RELEASE.encode())
    layer.dir("tmp", 0o1777)
    layer.dir("root", 0o700)
    layer.dir("home/nonroot", 0o700, NONROOT, NONROOT)
    layer.dir("var/lib/vulngate", 0o700, NONROOT, NONROOT)
    # no shell, no package manager, no other program: only the loader and libraries execute
    for name, (ti, _) in layer.entries.items():
        if ti.isreg() and ti.mode & 0o111 and ".so" not in os.path.basename(name):
            if not name.startswith(("usr/lib/", "lib/", "lib64/")):
                die(f"an executable would be left in the image: {name}")
        if not ti.isdir() and os.path.basename(name) in ("sh", "bash", "dash", "dpkg", "apt", "apt-get", "busybox"):
            die(f"{name} would be left in the image")
    return layer, packages


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(a):
    out = a.output
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    # a fresh layout: old blobs of earlier builds would make two layouts differ
    for f in os.listdir(os.path.join(out, "blobs", "sha256")):
        os.remove(os.path.join(out, "blobs", "sha256", f))
    base, packages = base_layer(a.debs, a.epoch)
    app = Layer(a.epoch)
    with open(a.binary, "rb") as f:
        app.file("usr/bin/vulngate", f.read(), 0o755)
    layers = [base.write(out), app.write(out)]
    created = iso(a.epoch)
    labels = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.description": "vulngate: Kubernetes admission controller gating images on their vulnerability reports",
        "org.opencontainers.image.licenses": a.license,
        "org.opencontainers.image.revision": a.revision,
        "org.opencontainers.image.source": a.source,
        "org.opencontainers.image.title": "vulngate",
        "org.opencontainers.image.version": a.version,
        "org.opencontainers.image.base.name": "debian:bookworm (" + ", ".join(f"{p} {v}" for p, v, _ in packages) + ")",
    }
    config = {
        "architecture": a.arch,
        "os": "linux",
        "created": created,
        "config": {
            "User": f"{NONROOT}:{NONROOT}",
            "Entrypoint": ["/usr/bin/vulngate"],
            "Cmd": ["serve", "--listen", "0.0.0.0:8443"],
            "Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            "WorkingDir": "/var/lib/vulngate",
            "ExposedPorts": {"8443/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [d for _, _, d in layers]},
        "history": [
            {"created": created, "created_by": "scripts/build-image.sh: Debian bookworm " + " ".join(f"{p}={v}" for p, v, _ in packages)},
            {"created": created, "created_by": "scripts/build-image.sh: /usr/bin/vulngate " + a.version},
        ],
    }
    cfg = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": write_blob(out, cfg), "size": len(cfg)},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}
            for d, s, _ in layers
        ],
        "annotations": {k: v for k, v in labels.items() if k != "org.opencontainers.image.description"},
    }
    man = canonical(manifest)
    digest = write_blob(out, man)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": len(man),
                "platform": {"architecture": a.arch, "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": a.version},
            }
        ],
    }
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(out, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    print(digest)


def sbom(a):
    """cargo-cyclonedx's SBOM of the binary, plus the Debian packages, with a fixed timestamp and
    a serial number derived from the image digest (the same build gives the same SBOM)."""
    with open(a.sbom) as f:
        bom = json.load(f)
    bom["serialNumber"] = "urn:uuid:" + str(__import__("uuid").UUID(hashlib.sha256(a.digest.encode()).hexdigest()[:32]))
    meta = bom.setdefault("metadata", {})
    meta["timestamp"] = iso(a.epoch)
    props = meta.setdefault("properties", [])
    props.append({"name": "vulngate:image.digest", "value": a.digest})
    comps = bom.setdefault("components", [])
    for deb in a.debs:
        pkg, ver, arch = deb_field(deb, "Package"), deb_field(deb, "Version"), deb_field(deb, "Architecture")
        src = deb_field(deb, "Source").split(" ")[0] or pkg
        purl = f"pkg:deb/debian/{pkg}@{ver}?arch={arch}&distro=debian-12"
        if src != pkg:
            purl += f"&upstream={src}"
        comps.append({"type": "library", "bom-ref": purl, "name": pkg, "version": ver, "purl": purl,
                      "supplier": {"name": "Debian"}})
    sys.stdout.write(json.dumps(bom, indent=2, sort_keys=True) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--output")
    p.add_argument("--binary")
    p.add_argument("--arch", default="amd64")
    p.add_argument("--version", required=True)
    p.add_argument("--revision", default="unknown")
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--source", default="")
    p.add_argument("--license", default="")
    p.add_argument("--sbom")
    p.add_argument("--digest")
    p.add_argument("debs", nargs="+")
    a = p.parse_args()
    if a.sbom:
        sbom(a)
    elif a.output and a.binary:
        build(a)
    else:
        die("give --output and --binary, or --sbom")


if __name__ == "__main__":
    main()
