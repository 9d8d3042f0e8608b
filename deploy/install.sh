#!/usr/bin/env bash
# Install nwwatch as a systemd service on the acquisition PC (run as root from a checkout).
#
#   sudo deploy/install.sh                 # user, venv, config (if absent), unit, start
#   sudo deploy/install.sh --reconfigure   # after editing /etc/nwwatch/nwwatch.toml
#   sudo deploy/install.sh --rollback      # back to the venv the last update replaced
#
# Environment: PREFIX (/opt/nwwatch), CONFIG (/etc/nwwatch/nwwatch.toml), PYTHON (python3.11),
# SERVICE_USER (nwwatch), EXTRA_PIP_ARGS (e.g. "onnxruntime-gpu[cuda,cudnn]" for the CUDA libs),
# UNIT_DIR (/etc/systemd/system), WHEELS (a folder of wheels: pip installs from it alone, no
# network; deploy/README.md, "Without network access"). The unit is written with PREFIX,
# CONFIG and SERVICE_USER in place of the defaults it ships with; once installed, those of the
# installed unit are the defaults (an update or --reconfigure need not repeat them), and PYTHON
# and EXTRA_PIP_ARGS default to those the installed venv was made with. Run again after
# updating the checkout: it builds a new venv in PREFIX/venv.new and checks it while the
# service keeps running, then stops the service, keeps the old venv as PREFIX/venv.previous,
# puts the new one in place and starts the service.
set -euo pipefail
# sudo keeps the admin's umask where it is stricter (027 on hardened systems): the venv and
# pip's files would be root's alone and the service user could not import nwwatch.
umask 022

SRC=$(cd "$(dirname "$0")/.." && pwd)
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
DROPIN_DIR=$UNIT_DIR/nwwatch.service.d
# An update or --reconfigure without PREFIX, CONFIG or SERVICE_USER keeps those the installed
# unit runs with: the shipped defaults would install a second venv and configuration beside
# them and point the unit there.
if [[ -f $UNIT_DIR/nwwatch.service ]]; then
    installed_exec=$(sed -n 's/^ExecStart=//p' "$UNIT_DIR/nwwatch.service")
    installed_user=$(sed -n 's/^User=//p' "$UNIT_DIR/nwwatch.service")
    if [[ $installed_exec =~ ^(/[^[:space:]]+)/venv/bin/nwwatch\ run\ --config\ ([^[:space:]]+)$ ]]; then
        PREFIX=${PREFIX:-${BASH_REMATCH[1]}}
        CONFIG=${CONFIG:-${BASH_REMATCH[2]}}
    fi
    SERVICE_USER=${SERVICE_USER:-$installed_user}
fi
PREFIX=${PREFIX:-/opt/nwwatch}
CONFIG=${CONFIG:-/etc/nwwatch/nwwatch.toml}
SERVICE_USER=${SERVICE_USER:-nwwatch}
WHEELS=${WHEELS:-}
MODE=${1:-}
[[ -z $MODE || $MODE == --reconfigure || $MODE == --rollback ]] \
    || { echo "install.sh: unknown option '$MODE' (--reconfigure, --rollback or none)" >&2; exit 2; }
# The service runs LIVE; an update builds NEW beside it and keeps the venv it replaces as
# PREVIOUS (--rollback swaps the two).
LIVE=$PREFIX/venv
NEW=$PREFIX/venv.new
PREVIOUS=$PREFIX/venv.previous
# --rollback swaps LIVE and PREVIOUS through SWAP in three moves; a run killed between them
# left the service without its venv (LIVE gone) or without the one to go back to. Undone or
# finished here, before anything reads LIVE.
SWAP=$PREFIX/venv.swap
if [[ -d $SWAP ]]; then
    if [[ ! -e $LIVE && -d $PREVIOUS ]]; then  # stopped after its first move: undone
        mv -T "$SWAP" "$LIVE"
        echo "install.sh: $LIVE put back from $SWAP (a --rollback stopped between its moves)" >&2
    elif [[ -d $LIVE && ! -e $PREVIOUS ]]; then  # stopped after its second move: finished
        mv -T "$SWAP" "$PREVIOUS"
        echo "install.sh: $PREVIOUS put in place from $SWAP (a --rollback stopped between its moves)" >&2
    else
        echo "install.sh: $SWAP is left beside $LIVE and $PREVIOUS, which no stopped --rollback leaves: see which venv it is and remove it or put it back yourself" >&2
        exit 1
    fi
fi
# An update stopped between its two renames (step 6) left no LIVE, the venv it replaced as
# PREVIOUS and its checked NEW (marked so once every check passed): finished here, where a
# new update would have removed PREVIOUS and built NEW again, and --rollback found no venv.
if [[ ! -e $LIVE && -d $PREVIOUS && -f $NEW/.install-checked ]]; then
    mv -T "$NEW" "$LIVE"
    rm -f "$LIVE/.install-checked"
    echo "install.sh: $LIVE put in place from $NEW (an update stopped between its moves)" >&2
fi
# Every update makes a new venv: by default from the interpreter and with the extra pip
# arguments the installed one was made with (an install with PYTHON=/usr/bin/python3.12 or the
# CUDA libraries keeps them without repeating them).
if [[ -z ${PYTHON:-} && -f $LIVE/pyvenv.cfg ]]; then
    PYTHON=$(sed -n 's/^executable *= *//p' "$LIVE/pyvenv.cfg")
    [[ -x $PYTHON ]] || PYTHON=
fi
PYTHON=${PYTHON:-python3.11}
if [[ -z ${EXTRA_PIP_ARGS+set} ]]; then
    if [[ -f $LIVE/extra-pip-args ]]; then
        EXTRA_PIP_ARGS=$(cat "$LIVE/extra-pip-args")
    elif compgen -G "$LIVE/lib/python3*/site-packages/nvidia/cudnn" >/dev/null; then
        # a venv made before the arguments were recorded, with the CUDA libraries from pip
        EXTRA_PIP_ARGS="onnxruntime-gpu[cuda,cudnn]"
    fi
fi
EXTRA_PIP_ARGS=${EXTRA_PIP_ARGS:-}

die() { echo "install.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (sudo)"
for value in "$PREFIX" "$CONFIG" "$SERVICE_USER"; do
    # written into the unit unquoted (ExecStart=, User=): no spaces or special characters
    [[ $value =~ ^[A-Za-z0-9_./@+-]+$ ]] \
        || die "'$value': PREFIX, CONFIG and SERVICE_USER may hold only letters, digits and _ . / @ + -"
done
[[ $SERVICE_USER != [-.@+]* && $SERVICE_USER != */* ]] \
    || die "'$SERVICE_USER': SERVICE_USER must be a user name (no leading - . @ +, no /)"
for value in "$PREFIX" "$CONFIG"; do
    # the unit runs in WorkingDirectory=/var/lib/nwwatch, and systemd refuses a relative
    # ExecStart= path: a relative one would name another file (or none) there
    [[ $value == /* ]] || die "'$value': PREFIX and CONFIG must be absolute paths"
done
command -v systemctl >/dev/null || die "systemd is required"
# pip fetches nwwatch's requirements (and setuptools to build it) from PyPI unless WHEELS names
# a folder holding them: then it looks nowhere else.
PIP_SOURCE=()
if [[ -n $WHEELS ]]; then
    [[ -d $WHEELS ]] || die "WHEELS=$WHEELS: no such folder"
    PIP_SOURCE=(--no-index --find-links "$(cd "$WHEELS" && pwd)")
fi
# The interpreter a new venv needs is checked before anything is changed (the user, the
# configuration).
if [[ -z $MODE ]]; then
    command -v "$PYTHON" >/dev/null \
        || die "PYTHON=$PYTHON: no such interpreter; install Python 3.11 or newer (Debian/Ubuntu: apt install python3.11 python3.11-venv) or name one with PYTHON=/usr/bin/python3.X"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "PYTHON=$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '(unknown)'); nwwatch needs 3.11 or newer: name one with PYTHON=/usr/bin/python3.X"
fi
echo "install.sh: PREFIX=$PREFIX CONFIG=$CONFIG SERVICE_USER=$SERVICE_USER"
[[ -n $MODE ]] || echo "install.sh: PYTHON=$PYTHON EXTRA_PIP_ARGS=$EXTRA_PIP_ARGS"

# The unit's PrivateTmp=yes hides /tmp and /var/tmp: the drop-in step refuses folders there,
# and the service would not find its venv (203/EXEC) or configuration there either.
PRIVATE_TMP=()
if grep -qx 'PrivateTmp=yes' "$SRC/systemd/nwwatch.service"; then
    PRIVATE_TMP=(--private-tmp)
    for value in "$PREFIX" "$CONFIG"; do
        [[ $value == /tmp || $value == /tmp/* || $value == /var/tmp || $value == /var/tmp/* ]] \
            && die "'$value' lies in /tmp or /var/tmp, which the unit's PrivateTmp=yes replaces by a private folder of the service: choose PREFIX and CONFIG elsewhere"
    done
fi

# Temporary files and a venv.new that was not put in place are removed however the script ends.
dropin_tmp=
build_src=
keep_new=no
cleanup() {
    rm -rf "$dropin_tmp" "$build_src"
    [[ $keep_new == yes ]] || rm -rf "$NEW"
}
trap cleanup EXIT

# The command that tries again once the configuration is fixed: an update whose new version
# refuses it left the service on the old one, which --reconfigure would validate instead.
rerun=$0${MODE:+ $MODE}

make_dropin() {
    # Validates the config with the code of the venv $1 (errors name the key) and writes the
    # drop-in that opens exactly its folders to the unit into $dropin_tmp; $2 "placeholder":
    # the configuration is still the example, whose folders are not made.
    # (-P on every run of a venv's python: `python -m`/`-c` put the current folder first on
    # sys.path, and run from the checkout root, as deploy/README.md says, the checkout's
    # nwwatch/ was imported instead of the venv's; the environment stays, as the unit's does)
    local venv=$1 dirs dir group listing
    dropin_tmp=$(mktemp)
    "$venv/bin/python" -P -m nwwatch.service.dropin "${PRIVATE_TMP[@]}" "$CONFIG" > "$dropin_tmp" \
        || die "fix $CONFIG and run: sudo $rerun"
    # Results and ledger folders must exist and belong to the service user before the drop-in
    # names them: systemd does not start a unit whose ReadWritePaths= folder is missing.
    # (plain paths from --writable: the drop-in's words are quoted and %-escaped for systemd)
    dirs=$("$venv/bin/python" -P -m nwwatch.service.dropin --writable "$CONFIG") \
        || die "fix $CONFIG and run: sudo $rerun"
    group=$(service_group)
    # the example's placeholder folders (/data/...) would land on the root file system, maybe
    # under a future mount point: made once the configuration names the lab's
    [[ ${2:-} == placeholder ]] && dirs=""
    while IFS= read -r dir; do
        [[ -n $dir ]] || continue
        # A folder the service user can already write keeps its owner, group and mode (a lab
        # may have given its results to its own group): an update does not take that back.
        if [[ -d $dir ]] && (cd / && runuser -u "$SERVICE_USER" -- test -w "$dir" -a -x "$dir") \
                2>/dev/null; then
            continue
        fi
        # A folder in use (a ledger's parent such as /var/lib, a share's top, results of
        # other people) is not taken over: install -d would give it to the service user, 0750.
        # (a new file system's lost+found is no one's files; a folder that cannot be listed
        # is taken for one in use)
        if [[ -d $dir ]] && { ! listing=$(ls -A -- "$dir" 2>/dev/null) \
                || [[ -n $(grep -vx 'lost+found' <<< "$listing") ]]; }; then
            die "$dir (a results or ledger folder of $CONFIG) holds files and $SERVICE_USER cannot write it; install.sh changes the owner of no folder in use: give $SERVICE_USER write access yourself (e.g. sudo chown -R $SERVICE_USER: $dir when it holds only nwwatch's results or ledger) or configure a folder of its own, then run: sudo $rerun"
        fi
        install -d -m 0750 -o "$SERVICE_USER" -g "$group" "$dir" \
            || die "cannot make $dir (a results or ledger folder of $CONFIG) for $SERVICE_USER:$group; fix that or the configuration, then run: sudo $rerun"
    done <<< "$dirs"
    # Each watched folder that exists must be listable by the service user: one it cannot
    # reach (a home folder of mode 0700) passed here, and the service stopped at its start
    # with exit 78. (A missing one is waited for by the service.)
    # (without runuser, or rolling back to a version that does not know --watched, exit 2,
    # it is not checked, and said so)
    if ! command -v runuser >/dev/null; then
        echo "install.sh: no runuser here: whether $SERVICE_USER can list the watched folders is not checked" >&2
        return 0
    fi
    local rc=0
    dirs=$("$venv/bin/python" -P -m nwwatch.service.dropin --watched "$CONFIG" 2>/dev/null) || rc=$?
    if ((rc == 2)); then
        echo "install.sh: $venv does not list the watched folders (an earlier version): whether $SERVICE_USER can list them is not checked" >&2
        return 0
    fi
    ((rc == 0)) || die "fix $CONFIG and run: sudo $rerun"
    while IFS= read -r dir; do
        [[ -n $dir && -d $dir ]] || continue
        (cd / && runuser -u "$SERVICE_USER" -- test -r "$dir" -a -x "$dir") 2>/dev/null \
            || die "$SERVICE_USER cannot list $dir (a watched folder of $CONFIG): give it read access to the folder and passage through every folder above it (e.g. sudo setfacl -m u:$SERVICE_USER:rx on each), or watch another folder, then run: sudo $rerun"
    done <<< "$dirs"
}

install_dropin() {
    install -d -m 0755 "$DROPIN_DIR"
    install -m 0644 "$dropin_tmp" "$DROPIN_DIR/paths.conf"
}

# The service user's primary group: the unit's Group= and the group of its folders. An
# existing account (SERVICE_USER=<the lab's>) need not have a group of its own name.
service_group() { id -gn "$SERVICE_USER"; }

# A service that crashed StartLimitBurst times within StartLimitIntervalSec refuses even a
# manual restart until that interval has passed ("start-limit-hit"); a new version or
# configuration is the operator's decision to try again, so the counter is cleared first.
start_service() {
    systemctl reset-failed nwwatch 2>/dev/null || true
    systemctl restart nwwatch
}

# The service must not run while its venv is moved: it imports modules lazily from the
# venv's path, which would then hold the other version.
stop_service() {
    [[ -f $UNIT_DIR/nwwatch.service ]] || return 0
    systemctl stop nwwatch || die "could not stop nwwatch (why: above); it keeps running from $LIVE"
}

if [[ $MODE == --reconfigure ]]; then
    # before a first install there is no venv to validate the configuration with ("fix the
    # configuration and run --reconfigure" again looped)
    [[ -x $LIVE/bin/python ]] \
        || die "nwwatch is not installed at $PREFIX ($LIVE: no venv): run sudo $0 first"
    [[ -f $CONFIG ]] || die "$CONFIG does not exist: nothing to reconfigure (sudo $0 installs one)"
    if cmp -s "$CONFIG" "$SRC/deploy/nwwatch.example.toml" || { [[ -f $PREFIX/config-from-example.sha256 ]] \
            && [[ $(sha256sum < "$CONFIG") == $(cat "$PREFIX/config-from-example.sha256") ]]; }; then
        die "$CONFIG is still the example: edit [[watch]] path and [output] results, then run: sudo $rerun"
    fi
    make_dropin "$LIVE"
    install_dropin
    systemctl daemon-reload
    systemctl enable nwwatch  # a first install on the example left it disabled
    start_service
    systemctl --no-pager status nwwatch || true
    exit 0
fi

if [[ $MODE == --rollback ]]; then
    keep_new=yes  # not this mode's to remove
    [[ -x $PREVIOUS/bin/python && -x $LIVE/bin/python ]] \
        || die "no earlier venv to go back to ($PREVIOUS): an update keeps one, a first install has none"
    # The earlier code must accept the configuration (a key added since is named) and be
    # importable by the service user before the service is stopped.
    make_dropin "$PREVIOUS"
    if command -v runuser >/dev/null \
            && ! (cd / && runuser -u "$SERVICE_USER" -- "$PREVIOUS/bin/python" -c 'import nwwatch.cli'); then
        die "$SERVICE_USER cannot import nwwatch from $PREVIOUS (why: above); nothing was changed"
    fi
    version() { "$1/bin/python" -P -c 'import nwwatch; print(nwwatch.__version__)' 2>/dev/null || echo '?'; }
    from=$(version "$LIVE") to=$(version "$PREVIOUS")
    stop_service
    # a swap: running --rollback again goes forward to the version just left (one stopped
    # between these moves is finished or undone by the next run, above)
    mv -T "$LIVE" "$SWAP"
    mv -T "$PREVIOUS" "$LIVE"
    mv -T "$SWAP" "$PREVIOUS"
    install_dropin
    systemctl daemon-reload
    start_service
    echo "install.sh: nwwatch $to now runs from $LIVE; $from is kept as $PREVIOUS (sudo $0 --rollback goes back to it)"
    systemctl --no-pager status nwwatch || true
    exit 0
fi

# 1. A static system user: lab shares grant access to a named account (or its groups); add it
#    to the group that may read the acquisition share, e.g. `usermod -aG microscope nwwatch`.
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/nwwatch --shell /usr/sbin/nologin \
        --comment "nwwatch service" "$SERVICE_USER"
fi
getent group video >/dev/null && usermod -aG video "$SERVICE_USER"   # /dev/nvidia* on some distros

# 2. A new virtual environment with nwwatch (no training extras: the service never needs torch),
#    built beside the one the service runs: pip never replaces files of a running service, and
#    a failure anywhere before the swap below leaves the service and its venv as they are.
install -d -m 0755 "$PREFIX"
rm -rf "$NEW"  # left by a run that was killed
"$PYTHON" -m venv "$NEW" \
    || die "$PYTHON could not make the virtual environment $NEW (why: above; Debian/Ubuntu: apt install python3.X-venv); run again once it can"
# (-P: the current folder is not imported from, as in make_dropin)
pip_install() { "$NEW/bin/python" -P -m pip install "${PIP_SOURCE[@]}" "$@"; }
pip_install --quiet --upgrade pip
constraints=()
[[ -f $SRC/constraints.txt ]] && constraints=(-c "$SRC/constraints.txt")
# pip builds a source folder in place: the checkout would get root's build/ and
# nwwatch.egg-info, and setuptools packs whatever an earlier build left in build/ (a module or
# model since removed from the checkout stays installed). A fresh copy of what the build reads
# (pyproject.toml, its readme and the packages it finds) is built instead.
build_src=$(mktemp -d)
for item in pyproject.toml README.md nwwatch training; do
    cp -r "$SRC/$item" "$build_src/"
done
# Not --quiet: only pip's full output names the requirement it could not find (as "nwwatch
# depends on numpy"). EXTRA_PIP_ARGS unquoted: several words are several arguments.
if ! pip_install --progress-bar off "${constraints[@]}" "$build_src" ${EXTRA_PIP_ARGS}; then
    if [[ -n $WHEELS ]]; then
        die "pip could not install nwwatch from the wheels in $WHEELS (what is missing: above, \"nwwatch ... depends on ...\"); make that folder as deploy/README.md says (\"Without network access\"), with the same Python version and platform as this PC"
    fi
    die "pip could not install nwwatch (why: above). Its requirements come from PyPI: without network access, run again with WHEELS=<a folder of wheels> (deploy/README.md, \"Without network access\")"
fi
printf '%s\n' "$EXTRA_PIP_ARGS" > "$NEW/extra-pip-args"
# The unit runs the venv's python as the service user: a venv made from an interpreter that
# user may not execute (one under root's home, e.g. pyenv's) fails every start (203/EXEC).
# Importing nwwatch also finds package files the service user may not read, and the nwwatch
# command the unit starts is run once.
if command -v runuser >/dev/null \
        && ! (cd / && runuser -u "$SERVICE_USER" -- "$NEW/bin/python" -c '') 2>/dev/null; then
    die "$SERVICE_USER cannot run $NEW/bin/python (-> $(readlink -f "$NEW/bin/python")): run again with PYTHON=<an interpreter all users may run, e.g. /usr/bin/python3.11>"
fi
if command -v runuser >/dev/null \
        && ! (cd / && runuser -u "$SERVICE_USER" -- "$NEW/bin/python" -c 'import nwwatch.cli') 2>/dev/null; then
    die "$SERVICE_USER cannot import nwwatch from $NEW (files only root may read?)"
fi
runner=()
command -v runuser >/dev/null && runner=(runuser -u "$SERVICE_USER" --)
(cd / && "${runner[@]}" "$NEW/bin/nwwatch" --version) \
    || die "$NEW/bin/nwwatch --version failed (why: above); the service still runs $LIVE"
install -d -m 0755 "$PREFIX/docs"
cp "$SRC/docs/service.md" "$PREFIX/docs/" 2>/dev/null || true

# 3. The configuration: installed once, never overwritten.
install -d -m 0755 "$(dirname "$CONFIG")"
# (its sha256 beside the venv, to know it untouched after the example changed in a release)
EXAMPLE_MARK=$PREFIX/config-from-example.sha256
if [[ ! -f $CONFIG ]]; then
    install -m 0644 "$SRC/deploy/nwwatch.example.toml" "$CONFIG"
    sha256sum < "$CONFIG" > "$EXAMPLE_MARK"
    echo "install.sh: wrote $CONFIG from the example: edit [[watch]] path and [output] results,"
    echo "            then run: sudo $0 --reconfigure"
fi
# The example untouched, and no service running: its placeholder folders are not made and
# the service is neither enabled nor started (it would write a ledger into
# /data/nwwatch-results). A running installation is updated as it was configured.
placeholder=""
if { cmp -s "$CONFIG" "$SRC/deploy/nwwatch.example.toml" \
        || { [[ -f $EXAMPLE_MARK ]] && [[ $(sha256sum < "$CONFIG") == $(cat "$EXAMPLE_MARK") ]]; }; } \
        && { [[ ! -e $LIVE ]] || ! systemctl is-active --quiet nwwatch 2>/dev/null; }; then
    placeholder=placeholder
fi

# 4. The drop-in generated from the configuration by the new code: a configuration it refuses
#    stops the update here, with the service still running the installed version.
make_dropin "$NEW" "$placeholder"

# 5. The scripts pip wrote into venv.new/bin (nwwatch, pip) start with
#    #!PREFIX/venv.new/bin/python, and activate names the folder too: a venv is not
#    relocatable, so they are pointed at PREFIX/venv, where this one runs from now on.
new_re=${NEW//./\\.}
{ grep -rlIF -- "$NEW" "$NEW/bin" "$NEW/pyvenv.cfg" 2>/dev/null || true; } \
    | while IFS= read -r file; do sed -i "s#$new_re\\b#$LIVE#g" "$file"; done
left=$(grep -rlIF -- "$NEW" "$NEW/bin" || true)
[[ -z $left ]] || die "could not point these files of $NEW at $LIVE: $left"
touch "$NEW/.install-checked"  # every check passed: a run stopped in the swap finishes it

# 6. The swap, with the service stopped only for it: the replaced venv is kept as venv.previous
#    (--rollback), the one kept before is removed once the service has stopped (a service
#    that does not stop keeps running, and --rollback keeps its venv to go back to).
[[ -e $LIVE ]] && stop_service
rm -rf "$PREVIOUS"
keep_new=yes
# -T: a folder left at the target is an error, not a folder to move into
[[ -e $LIVE ]] && mv -T "$LIVE" "$PREVIOUS"
mv -T "$NEW" "$LIVE"
rm -f "$LIVE/.install-checked"

# 7. The unit and the drop-in.
unit=$(mktemp)
sed -e "s#/opt/nwwatch#$PREFIX#g" -e "s#/etc/nwwatch/nwwatch.toml#$CONFIG#g" \
    -e "s#^User=nwwatch\$#User=$SERVICE_USER#" -e "s#^Group=nwwatch\$#Group=$(service_group)#" \
    "$SRC/systemd/nwwatch.service" > "$unit"
install -d -m 0755 "$UNIT_DIR"
install -m 0644 "$unit" "$UNIT_DIR/nwwatch.service"
rm -f "$unit"
install_dropin
systemctl daemon-reload
if [[ -n $placeholder ]]; then
    echo "install.sh: installed, not started: $CONFIG is still the example; edit [[watch]] path"
    echo "            and [output] results, then run: sudo $0 --reconfigure (it starts the service)"
    exit 0
fi
systemctl enable nwwatch
# restart, not `enable --now`: after an update the running service must load the new code
start_service
[[ -d $PREVIOUS ]] && echo "install.sh: the venv this update replaced is kept as $PREVIOUS (back to it: sudo $0 --rollback)"
systemctl --no-pager status nwwatch || true
