#!/usr/bin/env bash
# The CTest fixture that serves the test suites' H20_DRIVER=daemon runs (see h20_add_gtest):
#
#   h20d_fixture.sh start H20D SOCKET [h20d options...]   start h20d in the background, wait until
#                                                          its socket accepts connections
#   h20d_fixture.sh stop SOCKET                            SIGTERM it, wait for a clean exit
#
# The daemon's pid and log live next to the socket (SOCKET.pid, SOCKET.log). A daemon left over
# from an interrupted run on the same socket is stopped first. Exit status 0 on success; on
# failure the log is printed.
set -euo pipefail
cmd=${1:-}
case $cmd in
  start)
    h20d=$2 socket=$3; shift 3
    "$0" stop "$socket" >/dev/null 2>&1 || true
    mkdir -p "$(dirname "$socket")"
    rm -f "$socket.log"
    # setsid: the daemon outlives this script and ctest's process group; stop ends it.
    setsid "$h20d" --socket "$socket" --log-level info "$@" >"$socket.log" 2>&1 </dev/null &
    echo $! >"$socket.pid"
    for _ in $(seq 1 200); do
      if [[ -S $socket ]]; then
        echo "h20d (pid $(cat "$socket.pid")) serves $socket"
        exit 0
      fi
      if ! kill -0 "$(cat "$socket.pid")" 2>/dev/null; then break; fi
      sleep 0.05
    done
    echo "h20d did not start serving $socket; its log:" >&2
    cat "$socket.log" >&2 || true
    exit 1
    ;;
  stop)
    socket=$2
    [[ -f $socket.pid ]] || exit 0
    pid=$(cat "$socket.pid")
    rm -f "$socket.pid"
    kill -TERM "$pid" 2>/dev/null || exit 0
    # Stopped once gone or a zombie (its parent, not this script, reaps it).
    for _ in $(seq 1 1000); do
      state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
      if [[ -z $state || $state == Z ]]; then echo "h20d (pid $pid) stopped"; exit 0; fi
      sleep 0.01
    done
    echo "h20d (pid $pid) ignored SIGTERM for 10 s; killing it; its log:" >&2
    cat "$socket.log" >&2 || true
    kill -KILL "$pid" 2>/dev/null || true
    exit 1
    ;;
  *)
    echo "usage: $0 start H20D SOCKET [options...] | stop SOCKET" >&2
    exit 2
    ;;
esac
