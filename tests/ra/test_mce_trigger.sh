#!/bin/sh
# shellcheck disable=SC2016  # the sh -c scripts take their arguments as $1, $2, ...
# ra/ftvm-mce-trigger, the rasdaemon/mcelog trigger that passes an
# uncorrected hardware error to ftvmd as one "mce ..." line on its FIFO, and
# ra/install.sh --mce-trigger, which installs and configures it.
#
#  a. the FIFO path, for real: a FIFO held open read-write by a reader (as
#     ftvmd opens its --mce-fifo); the trigger run with rasdaemon-like
#     (mc_event, mce_record) and mcelog-like (DIMM, bus) environments,
#     hostile values included (newline, quotes, "$(...)", an injected
#     "mce"/"io-error" line, 5000 bytes): exactly one well-formed line per
#     run; corrected errors write nothing; every /run-style
#     ftvmd-*.events FIFO gets the line; no reader: back within 3 s, exit 0;
#     a regular file or a symlink is refused, and no FIFO at all is exit 0;
#  b. install.sh --mce-trigger into a DESTDIR: the script (0755); the host's
#     rasdaemon, configured when it runs triggers, else reported as unable;
#     a rasdaemon build with triggers (a stand-in binary): MC_UE_TRIGGER set
#     in its environment file, the rest of the file kept, idempotent, an
#     administrator's own trigger left alone; mcelog (/etc/mcelog): linked
#     and its mcelog.conf lines printed; the plain install still works;
#  c. a real machine check reaching rasdaemon/mcelog and the trigger needs
#     host machine-check support (CONFIG_X86_MCE: /dev/mcelog, the
#     mce:mce_record tracepoint) and an injection: reported as SKIP.
#
# Exit 0 passed, 1 failed (any check of a or b), 77 when a and b passed and
# only the real path (c) could not run here. Needs no root for (a); (b)
# writes only under its work directory.
HERE=$(dirname "$0")
# shellcheck source=tests/ra/lib.sh
. "$HERE/lib.sh"

TRIG=$RA/ftvm-mce-trigger
LC_ALL=C
export LC_ALL
PASSED=0 FAILED=0 READERS=""

pass() {
	PASSED=$((PASSED + 1))
	echo "PASS: $*"
}
bad() {
	FAILED=$((FAILED + 1))
	echo "FAIL: $*"
}
check() { # check DESCRIPTION COMMAND...
	_d=$1
	shift
	if "$@"; then pass "$_d"; else bad "$_d"; fi
}

stop_readers() {
	for _p in $READERS; do
		kill "$_p" 2>/dev/null
	done
	for _p in $READERS; do
		wait "$_p" 2>/dev/null
	done
	READERS=""
}
trap 'stop_readers; cleanup' EXIT
trap 'exit 1' INT TERM

[ -x "$TRIG" ] || { bad "$TRIG is not executable"; exit 1; }
for c in mkfifo timeout awk; do
	command -v $c >/dev/null 2>&1 || fail "no $c (coreutils, mawk/gawk)"
done
make_work

# reader FIFO OUT: as ftvmd, open it read-write (writers never block, the
# reader never sees end of file) and copy what arrives to OUT.
reader() {
	mkfifo -m 0600 "$1" || fail "mkfifo $1"
	: >"$2"
	cat 0<>"$1" >"$2" &
	READERS="$READERS $!"
}

# run_trig ERRFILE VAR=VALUE...: the trigger in exactly that environment
# (as the daemons run it: their own, nothing inherited); sets RC and MS
# (how long it took, in ms). A trigger that hangs is ended after 10 s
# (timeout signals its whole process group) and fails the check (RC 124).
run_trig() {
	_err=$1
	shift
	_t0=$(date +%s%N)
	timeout -k 2 10 env -i FTVM_MCE_SYSLOG=0 "$@" /bin/sh "$TRIG" 2>"$_err"
	RC=$?
	_t1=$(date +%s%N)
	MS=$(((_t1 - _t0) / 1000000))
}

# wait_lines FILE N: until FILE has N lines (at most 3 s); true if it has.
wait_lines() {
	_i=0
	while [ "$(wc -l <"$1")" -lt "$2" ] && [ $_i -lt 30 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	[ "$(wc -l <"$1")" -eq "$2" ]
}

WELL_FORMED='^mce source=(rasdaemon|mcelog) event=[a-z_]+( [A-Z_]+=[A-Za-z0-9._:/@+,%#-]+)*$'

# one_line OUT BEFORE PATTERN: exactly one new line in OUT since BEFORE
# lines, well formed, at most 400 bytes, with PATTERN in it.
one_line() {
	sleep 0.2 # (anything more than one line would have come by now)
	wait_lines "$1" $(($2 + 1)) || return 1
	_l=$(tail -n 1 "$1")
	printf '%s\n' "$_l" | grep -Eq "$WELL_FORMED" || return 1
	[ ${#_l} -le 400 ] || return 1
	case $_l in *"$3"*) ;; *) return 1 ;; esac
	LAST=$_l
}

# ---- a. the FIFO path -----------------------------------------------------

F=$WORK/ftvmd-vm1.events
OUT=$WORK/vm1.out
reader "$F" "$OUT"

long=$(printf '%05000d' 0 | tr 0 x)
nl='
'
evil_label="DIMM_A1\"'\`${nl}mce source=evil event=x${nl}io-error injected"

n=0
run_trig "$WORK/err1" FTVM_MCE_FIFO="$F" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	TIMESTAMP="2026-01-01 00:00:00 +0000" COUNT=1 TYPE=Uncorrected \
	MESSAGE="read error \$(touch $WORK/pwned) \"quoted\" 'single'" \
	LABEL="$evil_label" MC_INDEX=0 TOP_LAYER=1 MIDDLE_LAYER=2 LOWER_LAYER=-1 \
	ADDRESS=1234abcd GRAIN=6 SYNDROME=0 DRIVER_DETAIL="$long"
if [ $RC -eq 0 ] && one_line "$OUT" $n "source=rasdaemon event=mc_event TYPE=Uncorrected"; then
	pass "rasdaemon mc_event Uncorrected (hostile LABEL/MESSAGE, 5000-byte DRIVER_DETAIL): one line, ${#LAST} bytes: $LAST"
else
	bad "rasdaemon mc_event Uncorrected: rc $RC, got: $(tail -n +$((n + 1)) "$OUT" | cat -A)"
	cat "$WORK/err1"
fi
n=$(wc -l <"$OUT")
check "no newline injection: no line but 'mce source=...' lines, none from the values" \
	sh -c '! grep -Evq "$1" "$2" && ! grep -q "source=evil" "$2" && ! grep -q "^io-error" "$2"' sh "$WELL_FORMED" "$OUT"
check "no shell expansion of a value (\$(touch ...) stayed text)" test ! -e "$WORK/pwned"
check "the LABEL's newline and quotes became _" grep -q ' LABEL=DIMM_A1_mce_source_evil_event_x_io-error_injected' "$OUT"
check "a 5000-byte value is cut (DRIVER_DETAIL at most 96 bytes)" \
	sh -c '! grep -Eq "DRIVER_DETAIL=x{97}" "$1"' sh "$OUT"

run_trig "$WORK/err2" FTVM_MCE_FIFO="$F" \
	THRESHOLD="1 in 24h" TOTALCOUNT=1 LOCATION="SOCKET:0 CHANNEL:1 DIMM:2 [A1]" \
	DIMM=2 CHANNEL=1 SOCKETID=0 CECOUNT=0 UCCOUNT=1 LASTEVENT=1767225600 \
	MESSAGE="Uncorrected DIMM memory error count exceeded threshold: 1 in 24h${nl}mce \"injected\" 'line'"
if [ $RC -eq 0 ] && one_line "$OUT" "$n" "source=mcelog event=memory"; then
	pass "mcelog [dimm] uc-error-trigger (no PATH, MESSAGE with newline and quotes): one line: $LAST"
else
	bad "mcelog uc-error-trigger: rc $RC, got: $(tail -n +$((n + 1)) "$OUT" | cat -A)"
	cat "$WORK/err2"
fi
n=$(wc -l <"$OUT")

run_trig "$WORK/err3" FTVM_MCE_FIFO="$F" LOCATION="CPU 3 on socket 0" SOCKETID=0 \
	MESSAGE="CPU 3 on socket 0 received Bus and Interconnect Errors in Memory" \
	CPU=3 LEVEL=Generic PARTICIPATION=Originator REQUEST=Read ORIGIN=Memory TIMEOUT=no
if [ $RC -eq 0 ] && one_line "$OUT" "$n" "source=mcelog event=bus"; then
	pass "mcelog bus-uc-threshold-trigger (no PATH at all): one line"
else
	bad "mcelog bus-uc-threshold-trigger: rc $RC"
	cat "$WORK/err3"
fi
n=$(wc -l <"$OUT")

run_trig "$WORK/err4" FTVM_MCE_FIFO="$F" PATH=/usr/bin:/bin MCGCAP=0x1000c14 MCGSTATUS=0x5 \
	STATUS=0xbe00000000800400 ADDR=0x1234000 MISC=0x86 CPU=0x2 SOCKETID=0x0 BANK=0x4 \
	BANK_NAME="Memory Controller" MCISTATUS_MSG="Uncorrected_error Error_enabled" \
	MCGSTATUS_MSG="RIPV MCIP" USER_ACTION="" MC_LOCATION="" TIMESTAMP="2026-01-01 00:00:01 +0000"
if [ $RC -eq 0 ] && one_line "$OUT" "$n" "source=rasdaemon event=mce_record"; then
	pass "rasdaemon mce_record, MCi_STATUS UC bit set: one line: $LAST"
else
	bad "rasdaemon mce_record UC: rc $RC"
	cat "$WORK/err4"
fi
n=$(wc -l <"$OUT")

# corrected errors: nothing written, exit 0, said so
corrected_none() { # corrected_none ERRFILE DESCRIPTION VAR=VALUE...
	_e=$1 _d=$2
	shift 2
	run_trig "$_e" FTVM_MCE_FIFO="$F" "$@"
	sleep 0.3
	if [ $RC -eq 0 ] && [ "$(wc -l <"$OUT")" -eq "$n" ] && grep -q "not an uncorrected error" "$_e"; then
		pass "$_d: nothing written, exit 0"
	else
		bad "$_d: rc $RC, $(($(wc -l <"$OUT") - n)) line(s) written"
		cat "$_e"
	fi
}
corrected_none "$WORK/err5" "rasdaemon mc_event Corrected" TYPE=Corrected COUNT=1 MC_INDEX=0 \
	LABEL=A1 MESSAGE=ce
corrected_none "$WORK/err6" "rasdaemon mc_event Deferred" TYPE=Deferred COUNT=1 MC_INDEX=0 LABEL=A1
corrected_none "$WORK/err7" "mcelog ce-error-trigger ('corrected DIMM ...')" THRESHOLD="10 in 24h" \
	MESSAGE="corrected DIMM memory error count exceeded threshold: 10 in 24h" CECOUNT=10 UCCOUNT=0
corrected_none "$WORK/err8" "mcelog cache-threshold-trigger" MESSAGE="cache threshold" CPU=1 LEVEL=2 \
	TYPE=Data AFFECTED_CPUS=1,5 SOCKETID=0
corrected_none "$WORK/err9" "rasdaemon mce_record, corrected MCi_STATUS (UC bit clear)" \
	STATUS=0x9c00000000010090 MCGSTATUS=0x0 BANK_NAME=Cache MCISTATUS_MSG=Corrected_error
corrected_none "$WORK/err10" "an unknown environment" MESSAGE=hello

# every /run/ftvmd-*.events (FTVM_RUN_DIR stands for /run)
mkdir -p "$WORK/run"
reader "$WORK/run/ftvmd-vm1.events" "$WORK/run1.out"
reader "$WORK/run/ftvmd-vm2.events" "$WORK/run2.out"
run_trig "$WORK/err11" FTVM_RUN_DIR="$WORK/run" TYPE=Uncorrected COUNT=1 MC_INDEX=1 LABEL=B2
if [ $RC -eq 0 ] && one_line "$WORK/run1.out" 0 "LABEL=B2" && one_line "$WORK/run2.out" 0 "LABEL=B2"; then
	pass "no FTVM_MCE_FIFO: each of ftvmd-vm1.events and ftvmd-vm2.events got the line"
else
	bad "no FTVM_MCE_FIFO: rc $RC; vm1 $(wc -l <"$WORK/run1.out") vm2 $(wc -l <"$WORK/run2.out") lines"
	cat "$WORK/err11"
fi

# no reader: bounded, exit 0, said so
mkfifo "$WORK/orphan.events"
run_trig "$WORK/err12" FTVM_MCE_FIFO="$WORK/orphan.events" TYPE=Uncorrected COUNT=1 MC_INDEX=0 LABEL=A1
if [ $RC -eq 0 ] && [ "$MS" -le 3000 ] && grep -q "cannot write" "$WORK/err12"; then
	pass "FIFO with no reader: back in $MS ms, exit 0, '$(cat "$WORK/err12")'"
else
	bad "FIFO with no reader: rc $RC after $MS ms: $(cat "$WORK/err12")"
fi

mkdir -p "$WORK/empty"
run_trig "$WORK/err13" FTVM_RUN_DIR="$WORK/empty" TYPE=Uncorrected COUNT=1 MC_INDEX=0 LABEL=A1
if [ $RC -eq 0 ] && [ "$MS" -le 3000 ] && grep -q "no ftvmd FIFO" "$WORK/err13"; then
	pass "no ftvmd FIFO at all: exit 0, said so"
else
	bad "no ftvmd FIFO at all: rc $RC after $MS ms: $(cat "$WORK/err13")"
fi

# a path that is not a FIFO: refused, never written
: >"$WORK/regular"
run_trig "$WORK/err14" FTVM_MCE_FIFO="$WORK/regular" TYPE=Uncorrected COUNT=1 MC_INDEX=0 LABEL=A1
if [ $RC -eq 0 ] && [ ! -s "$WORK/regular" ] && grep -q "not a FIFO: refused" "$WORK/err14"; then
	pass "a regular file as FTVM_MCE_FIFO: refused, left empty"
else
	bad "a regular file as FTVM_MCE_FIFO: rc $RC, $(wc -c <"$WORK/regular") bytes written: $(cat "$WORK/err14")"
fi
n=$(wc -l <"$OUT")
ln -s "$F" "$WORK/link.events"
ln -s "$WORK/regular" "$WORK/run/ftvmd-vm3.events"
run_trig "$WORK/err15" FTVM_MCE_FIFO="$WORK/link.events" TYPE=Uncorrected COUNT=1 MC_INDEX=0 LABEL=A1
sleep 0.3
if [ $RC -eq 0 ] && [ "$(wc -l <"$OUT")" -eq "$n" ] && grep -q "not a FIFO: refused" "$WORK/err15"; then
	pass "a symlink (to a FIFO) as FTVM_MCE_FIFO: refused"
else
	bad "a symlink as FTVM_MCE_FIFO: rc $RC: $(cat "$WORK/err15")"
fi
run_trig "$WORK/err16" FTVM_RUN_DIR="$WORK/run" TYPE=Uncorrected COUNT=1 MC_INDEX=3 LABEL=C3
if [ $RC -eq 0 ] && [ ! -s "$WORK/regular" ] && one_line "$WORK/run1.out" 1 "LABEL=C3" &&
	grep -q "ftvmd-vm3.events is not a FIFO: refused" "$WORK/err16"; then
	pass "a non-FIFO ftvmd-vm3.events among the FIFOs: refused, the others written"
else
	bad "a non-FIFO among the FIFOs: rc $RC: $(cat "$WORK/err16")"
fi
stop_readers

# ---- b. install.sh --mce-trigger ----------------------------------------------

D=$WORK/dest
inst() { # inst OUTFILE [VAR=VALUE...]: install.sh --mce-trigger into $D
	_o=$1
	shift
	env DESTDIR="$D" RASDAEMON_CONF=/etc/default/rasdaemon "$@" sh "$RA/install.sh" --mce-trigger >"$_o" 2>&1
}
inst "$WORK/inst1.out"
rc=$?
sed 's/^/  | /' "$WORK/inst1.out"
t=$D/usr/lib/ftvm/ftvm-mce-trigger
if [ $rc -eq 0 ] && [ -f "$t" ] && [ "$(stat -c %a "$t")" = 755 ] && cmp -s "$t" "$TRIG"; then
	pass "install.sh --mce-trigger: $t (0755, the same script)"
else
	bad "install.sh --mce-trigger: rc $rc, $t $(stat -c %a "$t" 2>&1)"
fi
host_rd=$(command -v rasdaemon 2>/dev/null || { [ -x /usr/sbin/rasdaemon ] && echo /usr/sbin/rasdaemon; })
HOST_RD_TRIGGERS=no
if [ -z "$host_rd" ]; then
	echo "note: no rasdaemon on this host (apt-get install rasdaemon): only the stand-in below"
elif grep -aq MC_UE_TRIGGER "$host_rd"; then
	HOST_RD_TRIGGERS=yes
	check "the host's rasdaemon runs triggers: MC_UE_TRIGGER set in $D/etc/default/rasdaemon" \
		grep -qx "MC_UE_TRIGGER=/usr/lib/ftvm/ftvm-mce-trigger" "$D/etc/default/rasdaemon"
else
	if grep -q "NO trigger support" "$WORK/inst1.out" && [ ! -e "$D/etc/default/rasdaemon" ]; then
		pass "the host's $("$host_rd" --version 2>/dev/null | head -n 1) has no triggers: said so, its file left alone"
	else
		bad "the host's rasdaemon without triggers: not reported, or its file written"
	fi
fi

# a rasdaemon build with triggers (a stand-in: what install.sh looks at is
# the binary's MC_UE_TRIGGER/MCE_UE_TRIGGER and its --version)
fake=$WORK/rasdaemon-0.8
printf '#!/bin/sh\n# reads MC_CE_TRIGGER MC_UE_TRIGGER MCE_UE_TRIGGER\necho "rasdaemon 0.8.9 (stand-in)"\n' >"$fake"
chmod 755 "$fake"
D=$WORK/dest2
conf=$D/etc/default/rasdaemon
mkdir -p "$D/etc/default"
cat >"$conf" <<'EOF'
# rasdaemon environment (a copy as distributions ship it)
PAGE_CE_REFRESH_CYCLE="24h"
PAGE_CE_THRESHOLD="50"
PAGE_CE_ACTION="soft"
TRIGGER_DIR=
MC_CE_TRIGGER=
MC_UE_TRIGGER=
AER_CE_TRIGGER=
EOF
chmod 640 "$conf"
cp -p "$conf" "$WORK/conf.orig"
inst "$WORK/inst2.out" RASDAEMON="$fake"
rc=$?
sed 's/^/  | /' "$WORK/inst2.out"
if [ $rc -eq 0 ] && [ "$(grep -c '^MC_UE_TRIGGER=' "$conf")" = 1 ] &&
	grep -qx 'MC_UE_TRIGGER=/usr/lib/ftvm/ftvm-mce-trigger' "$conf" &&
	grep -qx 'MCE_UE_TRIGGER=/usr/lib/ftvm/ftvm-mce-trigger' "$conf"; then
	pass "rasdaemon with triggers: MC_UE_TRIGGER (in place) and MCE_UE_TRIGGER (appended) set"
else
	bad "rasdaemon with triggers: rc $rc: $(cat "$conf")"
fi
grep -v -e '^MC_UE_TRIGGER=' -e '^MCE_UE_TRIGGER=' -e '^# ftvm:' "$conf" >"$WORK/conf.rest.new"
grep -v '^MC_UE_TRIGGER=' "$WORK/conf.orig" >"$WORK/conf.rest.orig"
if cmp -s "$WORK/conf.rest.new" "$WORK/conf.rest.orig" && [ "$(stat -c %a "$conf")" = 640 ]; then
	pass "the rest of rasdaemon's file is kept line for line, mode 0640 kept"
else
	bad "rasdaemon's file: other lines changed or mode $(stat -c %a "$conf")"
	diff "$WORK/conf.orig" "$conf"
fi
cp -p "$conf" "$WORK/conf.once"
inst "$WORK/inst3.out" RASDAEMON="$fake"
rc=$?
check "install.sh --mce-trigger again: exit 0, rasdaemon's file byte for byte the same" \
	sh -c '[ "$1" = 0 ] && cmp -s "$2" "$3"' sh $rc "$WORK/conf.once" "$conf"
sed 's|^MC_UE_TRIGGER=.*|MC_UE_TRIGGER=/usr/local/sbin/my-ue-trigger|' "$WORK/conf.once" >"$conf"
cp "$conf" "$WORK/conf.admin"
inst "$WORK/inst4.out" RASDAEMON="$fake"
rc=$?
if [ $rc -eq 0 ] && cmp -s "$conf" "$WORK/conf.admin" && grep -q "left as it is" "$WORK/inst4.out"; then
	pass "an administrator's own MC_UE_TRIGGER: left as it is, said so"
else
	bad "an administrator's own MC_UE_TRIGGER: rc $rc; $(diff "$WORK/conf.admin" "$conf")"
fi

# mcelog: /etc/mcelog there
D=$WORK/dest3
mkdir -p "$D/etc/mcelog"
inst "$WORK/inst5.out" RASDAEMON=/nonexistent
rc=$?
if [ $rc -eq 0 ] && [ "$(readlink "$D/etc/mcelog/ftvm-mce-trigger")" = /usr/lib/ftvm/ftvm-mce-trigger ] &&
	grep -q "uc-error-trigger = ftvm-mce-trigger" "$WORK/inst5.out" &&
	grep -q "mem-uc-error-trigger = ftvm-mce-trigger" "$WORK/inst5.out"; then
	pass "mcelog: linked into /etc/mcelog (its trigger directory), mcelog.conf lines printed"
else
	bad "mcelog: rc $rc: $(cat "$WORK/inst5.out")"
fi

# the plain install still works
D=$WORK/dest4
if DESTDIR=$D BUILD_DIR=$WORK/nobuild sh "$RA/install.sh" >"$WORK/inst6.out" 2>&1 &&
	[ -x "$D$OCF_ROOT/resource.d/ftvm/ftvm" ] && [ -x "$D$OCF_ROOT/lib/ftvm/ftvm-event" ] &&
	[ ! -e "$D/usr/lib/ftvm/ftvm-mce-trigger" ]; then
	pass "install.sh without options: the agent as before (no trigger)"
else
	bad "install.sh without options: $(cat "$WORK/inst6.out")"
fi

# ---- c. the real path -------------------------------------------------------------

why=""
checked="/dev/mcelog"
[ -c /dev/mcelog ] || why="no /dev/mcelog"
tp=""
for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do
	checked="$checked, $d/events/mce"
	[ ! -d "$d/events/mce" ] || tp=$d/events/mce
done
if [ -z "$tp" ]; then
	why="${why:+$why, }no mce:mce_record tracepoint"
	[ -d /sys/kernel/tracing/events ] || [ -d /sys/kernel/debug/tracing/events ] ||
		why="$why (tracefs not mounted here either)"
fi
if [ -r /proc/config.gz ]; then
	checked="$checked, /proc/config.gz"
	if ! gzip -dc /proc/config.gz 2>/dev/null | grep -q '^CONFIG_X86_MCE=y'; then
		why="${why:+$why, }kernel built without CONFIG_X86_MCE (/proc/config.gz)"
	fi
fi
if [ -z "$host_rd" ]; then
	why="${why:+$why, }rasdaemon is not installed"
elif [ "$HOST_RD_TRIGGERS" != yes ]; then
	why="${why:+$why, }$host_rd has no trigger support"
fi
[ -n "$why" ] || why="injecting a machine check (mce-inject) into this host is not done by this test"

echo "$PASSED passed, $FAILED failed, 1 skipped"
if [ "$FAILED" -gt 0 ]; then
	echo "(not run either: a real machine check to the trigger: $why)"
	exit 1
fi
echo "SKIP: a real machine check reaching rasdaemon/mcelog and this trigger: $why (checked $checked); the FIFO and install checks above passed"
exit 77
