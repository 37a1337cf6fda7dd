# Process helpers shared by benches/load.sh and benches/soak.sh (sourced, not run).
# The caller defines log(), the PID associative array (name -> pid) and the STARTED
# array (pids in start order, stopped in reverse by its cleanup()).

descendants() { # every descendant pid of $1
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}

stop_pid() { # TERM a pid we started and its descendants, KILL after 5 s
  local p=$1 kids i c
  kill -0 "$p" 2>/dev/null || return 0
  kids=$(descendants "$p" | tr '\n' ' ')
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then log "pid $p ignored TERM for 5 s: KILL"; kill -KILL "$p" 2>/dev/null || true; fi
  for c in $kids; do if kill -0 "$c" 2>/dev/null; then kill -KILL "$c" 2>/dev/null || true; fi; done
  wait "$p" 2>/dev/null || true
}

port_busy() { ss -Hltn "sport = :$1" | grep -q .; }

wait_port() { # port pid [timeout_s]
  local port=$1 p=$2 n=$(( ${3:-20} * 10 ))
  while ! port_busy "$port"; do
    [[ -n "$p" ]] && ! kill -0 "$p" 2>/dev/null && return 1
    n=$((n-1)); [[ $n -le 0 ]] && return 1
    sleep 0.1
  done
}

launch() { # name logfile cmd... : start in the background, record the pid
  local name=$1 logf=$2; shift 2
  "$@" >"$logf" 2>&1 &
  PID[$name]=$!
  STARTED+=("$!")
}
