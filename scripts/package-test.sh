#!/usr/bin/env bash
# Install test of the packages (CI runs it from scripts/test.sh after cargo test).
#
# Builds both packages (scripts/package.sh), then on this machine, as root:
#   dpkg -i the .deb (over an installed ossmount too), checking /etc is untouched;
#   ossmount --version names the version and this checkout's commit;
#   man -w finds ossmount(1), a subcommand's page and mount.fuse.ossmount(8);
#   the bash completion, sourced in bash (directly and through bash-completion's
#   loader), completes a subcommand and an option;
#   an /etc/fstab-style line in a temporary fstab (`mount -T FILE`) mounts the sample
#   bucket of an `ossmount serve` through the installed /sbin/mount.fuse.ossmount, with
#   credentials from a root-only file; cmp of one object; umount;
#   the same line through systemd's fstab generator, and the systemd .mount unit of
#   docs/mount.md (systemd-analyze verify, then the mount(8) call systemd makes for it),
#   where systemd's tools exist (systemd itself need not run);
#   dpkg --purge: every path `dpkg -L` listed is gone (directories may stay only if
#   another package owns them or something else lives in them), the cache stays;
#   the .rpm: rpm -qlp lists the same payload, Requires fuse3, its binary runs.
# Safe to rerun: everything lives in a fresh temporary directory and is cleaned up.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

[ "$(id -u)" -eq 0 ] || { echo "package-test.sh: needs root (dpkg -i, mount)" >&2; exit 1; }

need_apt=()
command -v man >/dev/null || need_apt+=(man-db)
command -v rpm >/dev/null || need_apt+=(rpm)
dpkg-query -W -f='${Status}' fuse3 2>/dev/null | grep -q 'ok installed' || need_apt+=(fuse3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

scripts/package.sh

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DEB=$TARGET/package/ossmount_${VERSION}_$(dpkg --print-architecture).deb
RPM=$TARGET/package/ossmount-$VERSION-1.$(uname -m).rpm

T=$(mktemp -d /tmp/ossmount-pkgtest.XXXXXX)
SERVE_PID=""
cleanup() {
  for m in "$T"/mnt*; do
    mountpoint -q "$m" 2>/dev/null && { umount "$m" || umount -l "$m"; } 2>/dev/null
  done
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# dpkg, waiting (up to 5 min) while another apt or dpkg holds its lock, as on a shared box.
dpkg_locked() {
  local i
  for i in $(seq 300); do
    if dpkg "$@" > "$T/dpkg.out" 2>&1; then return 0; fi
    grep -q 'lock' "$T/dpkg.out" || { cat "$T/dpkg.out" >&2; return 1; }
    [ "$i" -eq 1 ] && echo "   (dpkg is locked by another process: waiting)"
    sleep 1
  done
  cat "$T/dpkg.out" >&2
  return 1
}

# Files in /etc with size and mtime: installing must not change any.
etc_state() { find /etc -xdev \( -type f -o -type l \) -printf '%p %s %T@\n' | sort; }

echo "== dpkg -i $(basename "$DEB")"
if dpkg-query -W -f='${Status}' ossmount 2>/dev/null | grep -q 'ok installed'; then
  echo "   (ossmount $(dpkg-query -W -f='${Version}' ossmount) is installed already: installing over it)"
fi
etc_state > "$T/etc.before"
dpkg_locked -i "$DEB" || fail "dpkg -i"
etc_state > "$T/etc.after"
diff "$T/etc.before" "$T/etc.after" || fail "installing changed /etc"
ok "installed; /etc unchanged ($(wc -l < "$T/etc.after") files compared)"
dpkg -L ossmount | sort > "$T/paths"
[ "$(command -v ossmount)" = /usr/bin/ossmount ] || fail "ossmount is $(command -v ossmount), not /usr/bin/ossmount"
dpkg -S /sbin/mount.fuse.ossmount | grep -q '^ossmount:' || fail "/sbin/mount.fuse.ossmount is not the package's"

v=$(ossmount --version)
echo "   $v"
case $v in "ossmount $VERSION (commit "*) ;; *) fail "--version says: $v" ;; esac
if head=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  case $v in *"$head"*) ;; *) fail "--version lacks this checkout's commit $head" ;; esac
fi
ok "--version names $VERSION and the commit"

for page in ossmount ossmount-mount "8 mount.fuse.ossmount"; do
  # shellcheck disable=SC2086
  w=$(man -w $page) || fail "man -w $page"
  echo "   man -w $page: $w"
done
MANPAGER=cat MANWIDTH=200 man --nj --nh ossmount-mount 2>/dev/null | grep -q -- '--cache-dir' \
  || fail "man ossmount-mount does not render --cache-dir"
MANPAGER=cat MANWIDTH=200 man --nj --nh 8 mount.fuse.ossmount 2>/dev/null | grep -q 'ossmount-mount' \
  || fail "man mount.fuse.ossmount does not lead to ossmount-mount"
ok "man pages"

complete_words() { # words... -> what bash completes for the last one
  local cword=$(($# - 1))
  bash --norc --noprofile -c '
    source /usr/share/bash-completion/completions/ossmount
    f=$(complete -p ossmount | sed -n "s/.*-F \([^ ]*\).*/\1/p")
    COMP_WORDS=("${@:2}"); COMP_CWORD=$1; COMP_LINE="${*:2}"; COMP_POINT=${#COMP_LINE}
    "$f" ossmount "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf "%s\n" "${COMPREPLY[@]}"' _ "$cword" "$@"
}
[ "$(complete_words ossmount mo)" = mount ] || fail "bash: ossmount mo<TAB> gave: $(complete_words ossmount mo)"
complete_words ossmount mount --cache-d | grep -qx -- --cache-dir || fail "bash: ossmount mount --cache-d<TAB>"
if [ -r /usr/share/bash-completion/bash_completion ]; then
  # bash-completion loads completions on demand from the standard directory.
  bash --norc --noprofile -c 'source /usr/share/bash-completion/bash_completion
    _completion_loader ossmount; complete -p ossmount' | grep -q -- '-F' \
    || fail "bash-completion's loader does not find the ossmount completion"
fi
ok "bash completes 'ossmount mo' to mount and 'ossmount mount --cache-d' to --cache-dir"

echo "== fstab mount through /sbin/mount.fuse.ossmount"
mkdir -p "$T/data/sample/dir" "$T/mnt" "$T/cache"
head -c $((5 << 20)) /dev/urandom > "$T/data/sample/dir/object.bin"
echo "hello from the package test" > "$T/data/sample/hello.txt"
OSS_ACCESS_KEY_ID=pkgtest-access-key OSS_ACCESS_KEY_SECRET=pkgtest-secret-key \
  ossmount serve "$T/data" --listen 127.0.0.1:0 > "$T/serve.out" 2> "$T/serve.log" &
SERVE_PID=$!
for _ in $(seq 300); do
  grep -q 'listening on' "$T/serve.out" 2>/dev/null && break
  kill -0 "$SERVE_PID" 2>/dev/null || fail "serve exited: $(cat "$T/serve.log")"
  sleep 0.1
done
ENDPOINT=$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$T/serve.out" | head -1)
[ -n "$ENDPOINT" ] || fail "serve did not start"
# Credentials: a root-only file, never the fstab line.
(umask 077; printf 'OSS_ACCESS_KEY_ID=pkgtest-access-key\nOSS_ACCESS_KEY_SECRET=pkgtest-secret-key\n' > "$T/credentials")
OPTS="_netdev,nofail,endpoint=$ENDPOINT,region=cn-hangzhou,allow_other,cache_dir=$T/cache,credentials=$T/credentials"
printf '# a boot-time line as docs/mount.md gives it\noss://sample/  %s  fuse.ossmount  %s  0 0\n' \
  "$T/mnt" "$OPTS,x-systemd.automount" > "$T/fstab"
cat "$T/fstab"
mount -T "$T/fstab" "$T/mnt" || fail "mount -T $T/fstab $T/mnt"
findmnt -n -o SOURCE,FSTYPE,OPTIONS "$T/mnt"
[ "$(findmnt -n -o FSTYPE "$T/mnt")" = fuse.ossmount ] || fail "not a fuse.ossmount mount"
cmp "$T/data/sample/dir/object.bin" "$T/mnt/dir/object.bin" || fail "cmp of the object"
[ "$(cat "$T/mnt/hello.txt")" = "hello from the package test" ] || fail "hello.txt"
grep -q pkgtest-secret /proc/self/mountinfo && fail "the secret is in mountinfo"
umount "$T/mnt"
mountpoint -q "$T/mnt" && fail "still mounted after umount"
ok "mount -T fstab, cmp of a 5 MiB object, umount"

GEN=/lib/systemd/system-generators/systemd-fstab-generator
if [ -x "$GEN" ] && command -v systemd-escape >/dev/null; then
  echo "== the same line through systemd-fstab-generator"
  mkdir -p "$T/gen"
  SYSTEMD_FSTAB=$T/fstab SYSTEMD_LOG_LEVEL=err "$GEN" "$T/gen" "$T/gen" "$T/gen"
  unit=$(systemd-escape -p --suffix=mount "$T/mnt")
  [ -f "$T/gen/$unit" ] || fail "no $unit generated: $(ls "$T/gen")"
  [ -f "$T/gen/${unit%.mount}.automount" ] || fail "x-systemd.automount made no .automount unit"
  ls "$T"/gen/remote-fs.target.*/ 2>/dev/null | grep -qxF "${unit%.mount}.automount" \
    || fail "_netdev did not put the automount under remote-fs.target"
  # What systemd runs for a mount unit: mount What Where -t Type -o Options.
  key() { sed -n "s/^$1=//p" "$2" | tail -1; }
  what=$(key What "$T/gen/$unit") where=$(key Where "$T/gen/$unit")
  type=$(key Type "$T/gen/$unit") opts=$(key Options "$T/gen/$unit")
  echo "   $unit: What=$what Type=$type Options=$opts"
  mount "$what" "$where" -t "$type" -o "$opts" || fail "the generated unit's mount"
  cmp "$T/data/sample/dir/object.bin" "$where/dir/object.bin" || fail "cmp through the generated unit"
  umount "$where"
  ok "generator: .mount + .automount under remote-fs.target; its mount call works"

  echo "== the systemd .mount unit of docs/mount.md"
  mkdir -p "$T/units"
  cat > "$T/units/$unit" <<UNIT
[Unit]
Description=OSS bucket sample at $T/mnt
Wants=network-online.target
After=network-online.target

[Mount]
What=oss://sample/
Where=$T/mnt
Type=fuse.ossmount
Options=_netdev,endpoint=$ENDPOINT,region=cn-hangzhou,allow_other,cache_dir=$T/cache,credentials=$T/credentials
TimeoutSec=60

[Install]
WantedBy=remote-fs.target
UNIT
  if command -v systemd-analyze >/dev/null; then
    (cd "$T/units" && SYSTEMD_LOG_LEVEL=err systemd-analyze verify --man=no "$T/units/$unit") \
      || fail "systemd-analyze verify $unit"
    ok "systemd-analyze verify $unit"
  fi
  what=$(key What "$T/units/$unit") where=$(key Where "$T/units/$unit")
  type=$(key Type "$T/units/$unit") opts=$(key Options "$T/units/$unit")
  mount "$what" "$where" -t "$type" -o "$opts" || fail "the unit's mount"
  cmp "$T/data/sample/dir/object.bin" "$where/dir/object.bin" || fail "cmp through the unit"
  umount "$where"
  ok "the unit's mount call works"
else
  echo "   (no systemd-fstab-generator here: the systemd checks are skipped)"
fi

echo "== dpkg --purge ossmount"
dpkg_locked --purge ossmount || fail "dpkg --purge"
dpkg-query -W -f='${Status}' ossmount 2>/dev/null | grep -q 'installed' && fail "still installed"
left=0
while read -r p; do
  [ "$p" = "/." ] && continue
  if [ -d "$p" ]; then  # (also /sbin, a symlink to usr/sbin on merged-/usr systems)
    # A directory may stay if another package owns it or something else lives in it.
    if [ -z "$(ls -A "$p")" ] && ! dpkg-query -S "$p" >/dev/null 2>&1; then
      echo "left behind: empty directory $p"; left=1
    fi
  elif [ -e "$p" ] || [ -L "$p" ]; then
    echo "left behind: $p"; left=1
  fi
done < "$T/paths"
ls /var/lib/dpkg/info/ossmount.* >/dev/null 2>&1 && { echo "left behind: /var/lib/dpkg/info/ossmount.*"; left=1; }
[ $left -eq 0 ] || fail "purge left files behind"
[ -d "$T/cache" ] && [ -n "$(ls -A "$T/cache")" ] || fail "the user's cache went with the package"
ok "purged: none of the $(wc -l < "$T/paths") paths dpkg -L listed is left; the cache stays"

echo "== rpm -qlp $(basename "$RPM")"
rpm -qlp "$RPM" | tee "$T/rpm.list"
for f in /usr/bin/ossmount /usr/sbin/mount.fuse.ossmount /usr/share/man/man1/ossmount.1.gz \
         /usr/share/man/man1/ossmount-mount.1.gz /usr/share/man/man8/mount.fuse.ossmount.8.gz \
         /usr/share/bash-completion/completions/ossmount /usr/share/zsh/site-functions/_ossmount \
         /usr/share/fish/vendor_completions.d/ossmount.fish /usr/share/licenses/ossmount/LICENSE \
         /usr/share/doc/ossmount/README.md /usr/share/doc/ossmount/docs/mount.md; do
  grep -qx "$f" "$T/rpm.list" || fail "the rpm lacks $f"
done
rpm -qp --requires "$RPM" 2>/dev/null | tee "$T/rpm.req" | grep -qx fuse3 || fail "the rpm does not require fuse3"
rpm -qp --qf '%{NAME} %{VERSION}-%{RELEASE} %{ARCH} license=%{LICENSE}\n' "$RPM"
rpm -qp --configfiles "$RPM" 2>/dev/null | grep -q . && fail "the rpm ships configuration files"
mkdir -p "$T/rpmx"
rpm2archive - < "$RPM" | tar -xz -C "$T/rpmx"
"$T/rpmx/usr/bin/ossmount" --version | grep -q "ossmount $VERSION" || fail "the rpm's binary"
ok "rpm: payload, Requires fuse3, no config files, its binary runs"

echo "== sizes"
ls -l "$DEB" "$RPM" "$TARGET/dist/ossmount" | awk '{print $5, $NF}'
echo "package-test: all passed"
