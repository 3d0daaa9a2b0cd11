#!/usr/bin/env bash
# Build ossmount's Debian and RPM packages into target/package/:
#
#   target/package/ossmount_<version>_<debian arch>.deb
#   target/package/ossmount-<version>-1.<arch>.rpm      ($CARGO_TARGET_DIR/package if set)
#
# from a clean checkout, as root or not (building needs no root; installing `rpm` when
# rpmbuild is missing does). Each holds the `dist` build (fat LTO, stripped) of ossmount in
# /usr/bin, the mount(8) helper where `mount -t fuse.ossmount` looks for it, man pages and
# bash/zsh/fish completions generated from the clap definitions (ossmount-gen), the README,
# docs and the license. Both depend on the distribution's FUSE 3 package (`fuse3`), ship no
# configuration files and no maintainer scripts: installing changes no existing
# configuration, removing leaves nothing behind (caches are the users', never the
# package's).
#
# Tools: dpkg-deb and rpmbuild, the distributions' own (apt package `rpm` for rpmbuild on
# Debian, installed here when missing), rather than cargo-deb and cargo-generate-rpm:
# those would be compiled by `cargo install` on every fresh CI machine (minutes each on
# 2 cores), and staging the tree by hand is a few lines either way.
#
#   scripts/package.sh               # both
#   PACKAGE_FORMATS=deb scripts/package.sh
#   OSSMOUNT_GIT_COMMIT=<sha> ...    # building from a tarball: name the commit (--version)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

FORMATS=${PACKAGE_FORMATS:-deb rpm}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
SUMMARY=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -1)
MAINTAINER=${PACKAGE_MAINTAINER:-ossmount maintainers <ossmount@users.noreply.github.com>}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/package
WORK=$OUT/work
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

need_apt=()
for f in $FORMATS; do
  case $f in
    deb) command -v dpkg-deb >/dev/null || need_apt+=(dpkg) ;;
    rpm) command -v rpmbuild >/dev/null || need_apt+=(rpm) ;;
    *) echo "package.sh: unknown format $f (deb, rpm)" >&2; exit 2 ;;
  esac
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "package.sh: missing ${need_apt[*]} (dpkg-deb / rpmbuild) and no apt-get to install them" >&2
    exit 1
  fi
  echo "== installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "== cargo build --profile dist (LTO, stripped)"
cargo build --locked --quiet --profile dist --bin ossmount
BIN=$TARGET/dist/ossmount
# The generator runs on the build machine only; the dev build is the one `cargo test` has
# already made, so in CI this costs nothing.
echo "== man pages and completions (ossmount-gen)"
rm -rf "$WORK"
mkdir -p "$WORK"
cargo run --locked --quiet --bin ossmount-gen -- "$WORK/gen" >/dev/null
"$BIN" --version

# The file tree both packages install, differing only in where distributions keep the
# mount helper and zsh completions.
#   $1 stage dir, $2 helper dir, $3 zsh completion dir
stage() {
  local d=$1
  install -D -m 755 "$BIN" "$d/usr/bin/ossmount"
  install -D -m 755 scripts/mount.fuse.ossmount "$d$2/mount.fuse.ossmount"
  local page sec
  for page in "$WORK"/gen/man/*; do
    sec=${page##*.}
    install -D -m 644 "$page" "$d/usr/share/man/man$sec/$(basename "$page")"
    gzip -9n "$d/usr/share/man/man$sec/$(basename "$page")"
  done
  install -D -m 644 "$WORK/gen/completions/ossmount.bash" "$d/usr/share/bash-completion/completions/ossmount"
  install -D -m 644 "$WORK/gen/completions/_ossmount" "$d$3/_ossmount"
  install -D -m 644 "$WORK/gen/completions/ossmount.fish" "$d/usr/share/fish/vendor_completions.d/ossmount.fish"
  install -D -m 644 README.md "$d/usr/share/doc/ossmount/README.md"
  local doc
  for doc in docs/*; do
    install -D -m 644 "$doc" "$d/usr/share/doc/ossmount/docs/$(basename "$doc")"
  done
}

mkdir -p "$OUT"
for f in $FORMATS; do
  case $f in
  deb)
    ARCH=$(dpkg --print-architecture)
    DEB=$OUT/ossmount_${VERSION}_${ARCH}.deb
    S=$WORK/deb
    # /sbin: where mount(8) looks (FS_SEARCH_PATH /sbin:/sbin/fs.d:/sbin/fs) and where
    # Debian's fuse3 keeps mount.fuse3; on merged-/usr systems it is /usr/sbin anyway.
    stage "$S" /sbin /usr/share/zsh/vendor-completions
    install -D -m 644 LICENSE "$S/usr/share/doc/ossmount/LICENSE"
    cat > "$S/usr/share/doc/ossmount/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ossmount

Files: *
Copyright: the ossmount authors
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0 (and in /usr/share/doc/ossmount/LICENSE).
COPYRIGHT
    # Library dependencies of the binary as Debian names them (libc6 (>= 2.xx), ...).
    SHLIBS=""
    if command -v dpkg-shlibdeps >/dev/null; then
      mkdir -p "$WORK/shlibs/debian"
      printf 'Source: ossmount\n\nPackage: ossmount\nArchitecture: any\n' > "$WORK/shlibs/debian/control"
      SHLIBS=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O "$S/usr/bin/ossmount" 2>/dev/null \
               | sed -n 's/^shlibs:Depends=//p')
    fi
    if [ -z "$SHLIBS" ]; then
      glibc=$(objdump -T "$BIN" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
      SHLIBS="libc6${glibc:+ (>= $glibc)}, libgcc-s1"
    fi
    mkdir -p "$S/DEBIAN"
    cat > "$S/DEBIAN/control" <<CONTROL
Package: ossmount
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $(du -sk --exclude=DEBIAN "$S" | cut -f1)
Depends: fuse3, $SHLIBS
Section: utils
Priority: optional
Description: $SUMMARY
 ossmount mounts a bucket of Alibaba Cloud OSS (or any S3-compatible store)
 read-only through FUSE. Reads become part-sized ranged GETs kept in a local,
 resumable, CRC-64 verified cache. Includes mount.fuse.ossmount for /etc/fstab
 and mount -t fuse.ossmount, and ossmount download/ls/cat/serve.
CONTROL
    (cd "$S" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
       | xargs -0 md5sum > DEBIAN/md5sums)
    dpkg-deb --root-owner-group -Zxz --build "$S" "$DEB" >/dev/null
    echo "== $DEB ($(du -h "$DEB" | cut -f1))"
    ;;
  rpm)
    RARCH=$(uname -m)
    S=$WORK/rpm/root
    # /usr/sbin: every RPM distribution with fuse3 has a merged /usr (/sbin -> usr/sbin)
    # and its own fuse3 ships /usr/sbin/mount.fuse3.
    stage "$S" /usr/sbin /usr/share/zsh/site-functions
    install -D -m 644 LICENSE "$S/usr/share/licenses/ossmount/LICENSE"
    mkdir -p "$WORK/rpm/top"
    cat > "$WORK/rpm/ossmount.spec" <<SPEC
Name:           ossmount
Version:        $VERSION
Release:        1
Summary:        $SUMMARY
License:        Apache-2.0
Requires:       fuse3
AutoReqProv:    yes

%description
ossmount mounts a bucket of Alibaba Cloud OSS (or any S3-compatible store)
read-only through FUSE. Reads become part-sized ranged GETs kept in a local,
resumable, CRC-64 verified cache. Includes mount.fuse.ossmount for /etc/fstab
and mount -t fuse.ossmount, and ossmount download/ls/cat/serve.

%install
mkdir -p "%{buildroot}" && cp -a "$S/." "%{buildroot}/"

%files
%attr(0755,root,root) /usr/bin/ossmount
%attr(0755,root,root) /usr/sbin/mount.fuse.ossmount
/usr/share/man/man1/ossmount*.1.gz
/usr/share/man/man8/mount.fuse.ossmount.8.gz
/usr/share/bash-completion/completions/ossmount
/usr/share/zsh/site-functions/_ossmount
/usr/share/fish/vendor_completions.d/ossmount.fish
%dir /usr/share/licenses/ossmount
%license /usr/share/licenses/ossmount/LICENSE
%dir /usr/share/doc/ossmount
%doc /usr/share/doc/ossmount/README.md
%doc /usr/share/doc/ossmount/docs
SPEC
    # The tree is built already: no strip, no debuginfo split, no build-id links, no
    # recompression by the host's brp scripts.
    rpmbuild -bb --quiet --target "$RARCH" \
      --define "_topdir $WORK/rpm/top" \
      --define "_rpmdir $OUT" \
      --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
      --define "debug_package %{nil}" \
      --define "__os_install_post %{nil}" \
      --define "_build_id_links none" \
      "$WORK/rpm/ossmount.spec" >/dev/null
    RPM=$OUT/ossmount-$VERSION-1.$RARCH.rpm
    echo "== $RPM ($(du -h "$RPM" | cut -f1))"
    ;;
  esac
done
echo "== binary $(stat -c %s "$BIN") bytes ($BIN)"
