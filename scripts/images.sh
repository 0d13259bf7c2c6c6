#!/usr/bin/env bash
# Builds the container images of ragplane and ragplane-operator as OCI archives, without a
# registry or a Docker daemon: mmdebstrap makes a trimmed Debian root filesystem from packages,
# and buildah builds images/*.Containerfile (FROM scratch, no RUN steps) on top of it.
#
#   bash scripts/images.sh build [--profile release|dev] [--skip-cargo]
#       Builds the binaries (unless --skip-cargo), fetches the model (scripts/setup-model.sh),
#       builds both images and writes target/images/{ragplane,ragplane-operator}.tar. Prints
#       each image's digest and size. --profile dev packages the binaries of the test build
#       (`cargo build --workspace --locked --all-targets`, as scripts/test.sh runs it, so after
#       the tests it only checks that they are fresh); release (the default) builds
#       `cargo build --release --locked -p ragplane -p ragplane-operator`.
#   bash scripts/images.sh rootfs
#       Only makes (or finds cached) the two Debian root filesystems and prints their paths.
#   bash scripts/images.sh load --containerd-address SOCK [--namespace NS] [--snapshotter NAME]
#   bash scripts/images.sh load --kind CLUSTER | --k3d CLUSTER | --podman
#       Imports the archives: `ctr -n k8s.io images import`, `kind load image-archive`,
#       `k3d image import` or `podman load`.
#   bash scripts/images.sh smoke
#       Runs the ragplane image with podman as UID 65532 on a read-only root filesystem (no
#       writable /tmp either) with a volume at /var/lib/ragplane, waits for /readyz on a
#       published port (SMOKE_PORT, default 18080), ingests examples/corpus and queries it; runs
#       `ragplane-operator --help` the same way; prints the labels.
#
# Environment:
#   CARGO_TARGET_DIR        where cargo builds (default ./target; with CI=true, as in
#                           scripts/test.sh, ~/.cache/ragplane-ci/target)
#   RAGPLANE_CACHE          model and ONNX Runtime (default ~/.cache/ragplane, see setup-model.sh)
#   RAGPLANE_IMAGES_CACHE   Debian root filesystems and apt lists (default ~/.cache/ragplane-images)
#   IMAGES_DIR              output folder (default ./target/images)
#   DEBIAN_SUITE            Debian release of the root filesystems (default trixie)
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR   apt mirrors (default deb.debian.org)
#   SOURCE_DATE_EPOCH       image creation time (default: the time of the HEAD commit)
#   STORAGE_DRIVER          buildah/podman storage driver (their default: overlay)
#
# buildah and mmdebstrap run as root (as CI does); the script installs buildah, mmdebstrap and
# podman with apt-get when they are missing. The root filesystems are cached by the exact
# versions of their Debian packages, so a rerun only asks the mirror for its package lists.
set -euo pipefail
cd "$(dirname "$0")/.."

REPO=ghcr.io/ragplane
OUT=${IMAGES_DIR:-$PWD/target/images}
IMG_CACHE=${RAGPLANE_IMAGES_CACHE:-$HOME/.cache/ragplane-images}
MODEL_CACHE=${RAGPLANE_CACHE:-$HOME/.cache/ragplane}
SUITE=${DEBIAN_SUITE:-trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ORT_VERSION=1.32.0
MODEL=all-minilm-l6-v2-int8
DATA_UID=65532

# Debian packages of each image's root filesystem. Their dependencies (openssl and debconf for
# ca-certificates, mawk for base-files) are unpacked by mmdebstrap and then removed again.
packages_of() {
  case $1 in
    ragplane) echo "libc6 libgcc-s1 libstdc++6 ca-certificates base-files netbase" ;;
    operator) echo "libc6 libgcc-s1 ca-certificates base-files netbase" ;;
  esac
}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

workspace_version() {
  awk '/^\[workspace.package\]/{s=1;next} /^\[/{s=0} s && $1=="version"{gsub(/"/,"",$3); print $3; exit}' Cargo.toml
}

# Installs the Debian packages that provide the missing commands, given as command:package.
ensure_tools() {
  local missing=() spec
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

apt_install() {
  [ "$(id -u)" = 0 ] || die "missing $*; install them (apt-get install $*) or run as root"
  log "installing $* with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

ensure_rootfs_tools() {
  ensure_tools mmdebstrap:mmdebstrap dpkg-deb:dpkg
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || apt_install debian-archive-keyring
}

human() { numfmt --to=si --suffix=B --format='%.1f' "$1"; }

# ---------------------------------------------------------------------------------------------
# Debian root filesystems

sources_lines() {
  local kr=/usr/share/keyrings/debian-archive-keyring.gpg
  printf 'deb [arch=amd64 signed-by=%s] %s %s main\n' \
    "$kr" "$MIRROR" "$SUITE" "$kr" "$MIRROR" "$SUITE-updates" "$kr" "$SECURITY_MIRROR" "$SUITE-security"
}

# apt-get on private lists under the cache, with an empty dpkg status so that a simulated install
# prints every package of the closure with the version the mirror has now.
private_apt() {
  local d=$IMG_CACHE/apt-$SUITE
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  [ -f "$d/status" ] || : >"$d/status"
  sources_lines >"$d/sources.list"
  apt-get -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::Etc::Parts=/nonexistent -o Dir::Etc::Preferences=/nonexistent \
    -o Dir::Etc::PreferencesParts=/nonexistent -o Dir::State="$d" -o Dir::State::Lists="$d/lists" \
    -o Dir::State::status="$d/status" -o Dir::Cache="$d/cache" -o APT::Architecture=amd64 \
    -o APT::Architectures::=amd64 -o Acquire::Languages=none -o APT::Sandbox::User=root \
    -o Debug::NoLocking=1 "$@"
}

# Reads the mirror's package lists (once per run, before rootfs is called).
LISTS_OK=false
update_lists() {
  if private_apt -q update >/dev/null 2>&1; then LISTS_OK=true; else LISTS_OK=false; fi
}

# Prints pkg=version for every package the given packages need, sorted.
resolve_closure() {
  [ "$LISTS_OK" = true ] || return 1
  private_apt -s install --no-install-recommends "$@" 2>/dev/null |
    awk '/^Inst /{v=$3; sub(/^\(/,"",v); print $2"="v}' | LC_ALL=C sort
}

# Writes the root filesystem tarball $1: mmdebstrap unpacks the packages $4... (pkg=version, the
# whole closure), then only the files of the packages named in $2 (space-separated) are kept, and
# the user 65532 gets the home directory $3 (made and owned by it unless /nonexistent).
make_rootfs() {
  local tarball=$1 keep=" $2 " home=$3
  shift 3
  local work root deb pkg
  work=$(mktemp -d "$IMG_CACHE/work.XXXXXX")
  root=$work/root
  local mirrors=()
  mapfile -t mirrors < <(sources_lines)
  # extract: unpack the packages (and their dependencies) without running maintainer scripts;
  # keep the .deb files to know which files belong to which package.
  mmdebstrap --quiet --variant=extract --format=directory --architectures=amd64 \
    --skip=cleanup/apt/cache --include="$(IFS=,; echo "$*")" "$SUITE" "$root" "${mirrors[@]}"

  mkdir -p "$root/var/lib/dpkg/status.d"
  for deb in "$root"/var/cache/apt/archives/*.deb; do
    pkg=$(dpkg-deb -f "$deb" Package)
    # gcc-*-base holds the copyright file of libgcc-s1 and libstdc++6.
    if [[ $keep == *" $pkg "* || $pkg == gcc-*-base ]]; then
      # The package record, as distroless images keep it, so that scanners see the versions.
      dpkg-deb -f "$deb" | awk 'NR==1{print; print "Status: install ok installed"; next} {print}' \
        >"$root/var/lib/dpkg/status.d/$pkg"
    else
      dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./||' | LC_ALL=C sort -r |
        while IFS= read -r p; do
          [ -n "$p" ] || continue
          if [ -L "$root/$p" ] || [ -f "$root/$p" ]; then rm -f "$root/$p"
          elif [ -d "$root/$p" ]; then rmdir "$root/$p" 2>/dev/null || true
          fi
        done
    fi
  done

  # One CA bundle, as update-ca-certificates would write it with every Mozilla certificate.
  mkdir -p "$root/etc/ssl/certs"
  find "$root/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z |
    while IFS= read -r -d '' f; do cat "$f"; [ -z "$(tail -c1 "$f")" ] || echo; done \
      >"$root/etc/ssl/certs/ca-certificates.crt"
  [ "$(grep -c 'BEGIN CERTIFICATE' "$root/etc/ssl/certs/ca-certificates.crt")" -gt 100 ] ||
    die "the CA bundle has too few certificates"

  # Trim: documentation (but the copyright files), man pages, locales, gconv modules, debugger
  # helpers, the certificates' sources, and apt's and dpkg's state (but status.d).
  find "$root/usr/share/doc" -mindepth 2 ! -type d ! -regex '.*/usr/share/doc/[^/]*/copyright' -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "${root:?}"/usr/share/{man,info,locale,lintian,gdb,gcc,bug,bash-completion,base-files,pixmaps,menu} \
    "$root"/usr/share/ca-certificates "$root"/usr/sbin/update-ca-certificates \
    "$root"/etc/ca-certificates "$root"/etc/ca-certificates.conf \
    "$root"/usr/lib/x86_64-linux-gnu/gconv \
    "$root"/etc/apt "$root"/etc/dpkg "$root"/var/lib/apt "$root"/var/cache/* "$root"/var/log/* \
    "$root"/etc/hostname "$root"/etc/resolv.conf "$root"/etc/fstab "${root:?}"/dev/*
  find "$root/var/lib/dpkg" -mindepth 1 -maxdepth 1 ! -name status.d -exec rm -rf {} +
  find "$root/usr/share" "$root/etc" -mindepth 1 -type d -empty -delete

  # The unprivileged user of both images, and name-service defaults that read /etc/hosts first.
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:%s:%s:nonroot:%s:/usr/sbin/nologin\n' \
    "$DATA_UID" "$DATA_UID" "$home" >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$DATA_UID" >"$root/etc/group"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' \
    >"$root/etc/nsswitch.conf"
  mkdir -p "$root"/{dev,proc,sys,run,root,tmp,var/tmp}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 0700 "$root/root"
  if [ "$home" != /nonexistent ]; then
    mkdir -p "$root$home"
    chown "$DATA_UID:$DATA_UID" "$root$home"
    chmod 0755 "$root$home"
  fi

  tar --create --file "$work/rootfs.tar" --directory "$root" --sort=name --numeric-owner \
    --format=gnu .
  mv "$work/rootfs.tar" "$tarball"
  rm -rf "$work"
}

# The cached root filesystem tarballs of image flavour $1, newest first.
cached_rootfs() {
  find "$IMG_CACHE/rootfs" -maxdepth 1 -name "$1-$SUITE-*.tar" -printf '%T@ %p\n' 2>/dev/null |
    sort -rn | cut -d' ' -f2-
}

# Prints the path of the cached root filesystem tarball of image flavour $1 ($2: home of the
# user), making it when the mirror has other package versions than any cached one.
rootfs() {
  local name=$1 home=$2 closure key tarball
  local pkgs
  read -r -a pkgs <<<"$(packages_of "$name")"
  mkdir -p "$IMG_CACHE/rootfs"
  if closure=$(resolve_closure "${pkgs[@]}") && [ -n "$closure" ]; then
    # The key covers the package versions and the recipe, so a change to either makes a new one.
    key=$({ echo "$SUITE $home ${pkgs[*]}"; echo "$closure"; declare -f make_rootfs; } |
      sha256sum | cut -c1-16)
    tarball=$IMG_CACHE/rootfs/$name-$SUITE-$key.tar
    if [ -f "$tarball" ]; then
      log "Debian root filesystem of $name: cached ($(basename "$tarball"))"
    else
      log "Debian root filesystem of $name: making it with mmdebstrap ($SUITE)"
      local pinned=()
      mapfile -t pinned <<<"$closure"
      make_rootfs "$tarball" "${pkgs[*]}" "$home" "${pinned[@]}" >&2
      echo "$closure" >"${tarball%.tar}.packages"
      # Keep the three newest of this flavour.
      cached_rootfs "$name" | tail -n +4 | while read -r old; do
        rm -f "$old" "${old%.tar}.packages"
      done
    fi
  else
    tarball=$(cached_rootfs "$name" | head -n 1)
    [ -n "$tarball" ] || die "cannot read the package lists of $MIRROR and nothing is cached"
    log "warning: cannot read the package lists of $MIRROR; using the cached $(basename "$tarball")"
  fi
  echo "$tarball"
}

# ---------------------------------------------------------------------------------------------
# build

cmd_build() {
  local profile=release skip_cargo=false
  while [ $# -gt 0 ]; do
    case $1 in
      --profile) profile=${2:?}; shift 2 ;;
      --profile=*) profile=${1#*=}; shift ;;
      --skip-cargo) skip_cargo=true; shift ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
  done
  local profile_dir cargo_cmd
  case $profile in
    release) profile_dir=release; cargo_cmd=(cargo build --release --locked -p ragplane -p ragplane-operator) ;;
    # The same command as scripts/test.sh: other flags would resolve features differently and
    # rebuild most dependencies.
    dev) profile_dir=debug; cargo_cmd=(cargo build --workspace --locked --all-targets) ;;
    *) die "--profile must be release or dev" ;;
  esac
  local start=$SECONDS version target bin_dir
  version=$(workspace_version)
  [ -n "$version" ] || die "no version in Cargo.toml's [workspace.package]"
  # As in scripts/test.sh: CI keeps its build directory in the cache.
  if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/ragplane-ci/target"
  fi
  target=${CARGO_TARGET_DIR:-$PWD/target}
  bin_dir=$target/$profile_dir

  ensure_tools buildah:buildah podman:podman strip:binutils
  ensure_rootfs_tools

  if [ "$skip_cargo" = false ]; then
    log "binaries: ${cargo_cmd[*]}"
    "${cargo_cmd[@]}"
  fi
  local b
  for b in ragplane ragplane-operator; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing (build it, or drop --skip-cargo)"
  done

  log "model and ONNX Runtime: scripts/setup-model.sh"
  bash scripts/setup-model.sh >&2

  local rootfs_ragplane rootfs_operator
  update_lists
  rootfs_ragplane=$(rootfs ragplane /var/lib/ragplane)
  rootfs_operator=$(rootfs operator /nonexistent)

  # Image metadata. The creation time is that of the HEAD commit, so that rebuilding the same
  # inputs gives the same image digest.
  local epoch revision created
  epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  if [ "$revision" != unknown ] &&
    [ -n "$(git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    revision=$revision-dirty
  fi
  created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

  # Build contexts: only what each Containerfile adds.
  local ctx=$OUT/context stage=$OUT/stage
  rm -rf "$ctx" "$stage"
  mkdir -p "$ctx/ragplane" "$ctx/ragplane-operator" "$stage/opt/ragplane/models/$MODEL" \
    "$stage/opt/ragplane/onnxruntime"
  ln -f "$rootfs_ragplane" "$ctx/ragplane/rootfs.tar" 2>/dev/null ||
    cp "$rootfs_ragplane" "$ctx/ragplane/rootfs.tar"
  ln -f "$rootfs_operator" "$ctx/ragplane-operator/rootfs.tar" 2>/dev/null ||
    cp "$rootfs_operator" "$ctx/ragplane-operator/rootfs.tar"
  strip --strip-all -o "$ctx/ragplane/ragplane" "$bin_dir/ragplane"
  strip --strip-all -o "$ctx/ragplane-operator/ragplane-operator" "$bin_dir/ragplane-operator"
  cp "$MODEL_CACHE/models/$MODEL/model.onnx" "$MODEL_CACHE/models/$MODEL/tokenizer.json" \
    "$stage/opt/ragplane/models/$MODEL/"
  cp "$MODEL_CACHE/onnxruntime/libonnxruntime.so.$ORT_VERSION" "$stage/opt/ragplane/onnxruntime/"
  ln -s "libonnxruntime.so.$ORT_VERSION" "$stage/opt/ragplane/onnxruntime/libonnxruntime.so"
  chmod -R u=rwX,go=rX "$stage/opt"
  tar --create --file "$ctx/ragplane/opt.tar" --directory "$stage" --sort=name --owner=0 \
    --group=0 --numeric-owner --mtime="@$epoch" --format=gnu opt
  rm -rf "$stage"

  mkdir -p "$OUT"
  local name summary=()
  for name in ragplane ragplane-operator; do
    build_image "$name" "$version" "$revision" "$created" "$epoch"
    summary+=("$(image_summary "$name" "$version")")
  done
  log "built in $((SECONDS - start))s (profile $profile, revision $revision, created $created)"
  printf '%s\n' "${summary[@]}"
}

build_image() {
  local name=$1 version=$2 revision=$3 created=$4 epoch=$5
  local ref=$REPO/$name:$version old_id new_id
  old_id=$(buildah images --quiet --no-trunc "$ref" 2>/dev/null | head -n 1 || true)
  log "$ref: buildah bud -f images/$name.Containerfile"
  # --layers: a layer per ADD/COPY (and the earlier ones cached), not one for the whole file.
  buildah bud --quiet --isolation chroot --format oci --layers --timestamp "$epoch" \
    --identity-label=false \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
    --file "images/$name.Containerfile" --tag "$ref" --iidfile "$OUT/$name.iid" \
    "$OUT/context/$name" >/dev/null
  new_id=$(cat "$OUT/$name.iid")
  # A rebuild with other inputs leaves the previous image untagged: remove it.
  if [ -n "$old_id" ] && [ "sha256:${old_id#sha256:}" != "$new_id" ]; then
    buildah rmi "$old_id" >/dev/null 2>&1 || true
  fi
  # The same image as the archive already holds (the build is reproducible): nothing to write.
  if [ -f "$OUT/$name.tar" ] && [ -f "$OUT/$name.digest" ] &&
    [ "$(cat "$OUT/$name.tar.iid" 2>/dev/null)" = "$new_id" ]; then
    return 0
  fi
  check_image "$name" "$ref"
  rm -f "$OUT/$name.tar.tmp" "$OUT/$name.tar.iid"
  buildah push --quiet --format oci --digestfile "$OUT/$name.digest" "$ref" \
    "oci-archive:$OUT/$name.tar.tmp:$ref" >/dev/null
  mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
  echo "$new_id" >"$OUT/$name.tar.iid"
}

# Runs the binary in the image (and, for the data plane, resolves ONNX Runtime's libraries) to
# catch a library the root filesystem lacks, or a binary linked against a newer glibc.
check_image() {
  local name=$1 ref=$2 c out err=""
  c=$(buildah from --quiet --pull=never "$ref")
  if ! out=$(buildah run --isolation chroot "$c" -- "/usr/local/bin/$name" --version 2>&1); then
    err="$name does not run in its image: $out"
  elif [ "$name" = ragplane ] &&
    ! out=$(buildah run --isolation chroot "$c" -- /lib64/ld-linux-x86-64.so.2 --list \
      "/opt/ragplane/onnxruntime/libonnxruntime.so.$ORT_VERSION" 2>&1); then
    err="libonnxruntime cannot be loaded in the image: $out"
  elif grep -q "not found" <<<"$out"; then
    err="libonnxruntime lacks libraries in the image: $out"
  fi
  buildah rm "$c" >/dev/null
  [ -z "$err" ] || die "$err"
}

image_summary() {
  local name=$1 version=$2 ref digest size archive
  ref=$REPO/$name:$version
  digest=$(cat "$OUT/$name.digest")
  size=$(podman image inspect --format '{{.Size}}' "$ref")
  archive=$(stat -c %s "$OUT/$name.tar")
  printf '%s\n  archive  %s (%s, gzip layers)\n  digest   %s\n  image id %s\n  size     %s uncompressed (%s bytes)\n' \
    "$ref" "${OUT#"$PWD"/}/$name.tar" "$(human "$archive")" "$digest" "$(cat "$OUT/$name.iid")" \
    "$(human "$size")" "$size"
}

# ---------------------------------------------------------------------------------------------
# load

cmd_load() {
  local how="" arg="" namespace=k8s.io snapshotter=""
  while [ $# -gt 0 ]; do
    case $1 in
      --containerd-address) how=containerd; arg=${2:?}; shift 2 ;;
      --kind) how=kind; arg=${2:?}; shift 2 ;;
      --k3d) how=k3d; arg=${2:?}; shift 2 ;;
      --podman) how=podman; shift ;;
      --namespace) namespace=${2:?}; shift 2 ;;
      --snapshotter) snapshotter=${2:?}; shift 2 ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
  done
  [ -n "$how" ] || die "load needs --containerd-address SOCK, --kind CLUSTER, --k3d CLUSTER or --podman"
  local version name archive
  version=$(workspace_version)
  for name in ragplane ragplane-operator; do
    archive=$OUT/$name.tar
    [ -f "$archive" ] || die "$archive is missing; run: bash scripts/images.sh build"
    log "$REPO/$name:$version: loading $archive ($how)"
    case $how in
      containerd)
        ctr --address "$arg" --namespace "$namespace" images import \
          ${snapshotter:+--snapshotter "$snapshotter"} "$archive" ;;
      kind) kind load image-archive "$archive" --name "$arg" ;;
      k3d) k3d image import "$archive" --cluster "$arg" ;;
      podman) podman load --quiet --input "$archive" ;;
    esac
  done
}

# ---------------------------------------------------------------------------------------------
# smoke

cmd_smoke() {
  ensure_tools podman:podman curl:curl
  local version image op key port vol c question out
  version=$(workspace_version)
  image=$REPO/ragplane:$version
  op=$REPO/ragplane-operator:$version
  key="rp_smoke_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  port=${SMOKE_PORT:-18080}
  vol=ragplane-smoke-$$
  c=ragplane-smoke-$$
  question="How far away can the Skerry Point light be seen?"
  # podman raises the containers' limits to its own maximum by default, which fails for a root
  # without CAP_SYS_RESOURCE (as in some sandboxes): ask for modest ones instead.
  local nofile nproc
  nofile=$(ulimit -Hn | sed 's/unlimited/65536/')
  nproc=$(ulimit -Hu | sed 's/unlimited/32768/')
  nofile=$((nofile < 65536 ? nofile : 65536))
  nproc=$((nproc < 32768 ? nproc : 32768))
  # --read-only-tmpfs=false: no writable /tmp or /run either, as on Kubernetes.
  local run=(podman run --read-only --read-only-tmpfs=false --user "$DATA_UID:$DATA_UID" --cap-drop=ALL
    --security-opt=no-new-privileges --ulimit "nofile=$nofile:$nofile"
    --ulimit "nproc=$nproc:$nproc")

  log "$op: --help, read-only as $DATA_UID"
  "${run[@]}" --rm "$op" --help >/dev/null
  "${run[@]}" --rm "$op" --version

  log "$image: serve, read-only as $DATA_UID, with a volume at /var/lib/ragplane"
  podman volume create "$vol" >/dev/null
  # shellcheck disable=SC2064
  trap "podman rm -f '$c' >/dev/null 2>&1; podman volume rm -f '$vol' >/dev/null 2>&1" EXIT
  "${run[@]}" --detach --name "$c" -v "$vol:/var/lib/ragplane" \
    -v "$PWD/examples/corpus:/corpus:ro" -p "127.0.0.1:$port:8080" "$image" \
    serve --admin-key "$key" >/dev/null
  local i
  for i in $(seq 1 150); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; then break; fi
    if [ "$(podman inspect --format '{{.State.Running}}' "$c")" != true ]; then
      podman logs "$c"; die "the server exited"
    fi
    [ "$i" -lt 150 ] || { podman logs "$c"; die "no /readyz within 30 s"; }
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$port/readyz"; echo
  local exec=(podman exec -e RAGPLANE_URL=http://127.0.0.1:8080 -e RAGPLANE_API_KEY="$key" "$c" ragplane)
  "${exec[@]}" ingest --collection examples /corpus
  out=$("${exec[@]}" query --collection examples "$question")
  printf 'Q: %s\n%s\n' "$question" "$out"
  grep -q skerry-point-lighthouse <<<"$out" || die "the answer does not cite the lighthouse document"
  log "labels"
  podman image inspect --format '{{range $k, $v := .Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$image" "$op"
  log "smoke test passed"
}

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  rootfs)
    ensure_rootfs_tools
    update_lists
    rootfs ragplane /var/lib/ragplane
    rootfs operator /nonexistent ;;
  load) shift; cmd_load "$@" ;;
  smoke) shift; cmd_smoke "$@" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
