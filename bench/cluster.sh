# The cluster rows of `make bench`, sourced by bench/run.sh after the single-node
# rows (it uses run.sh's helpers and variables): three combined broker+controller
# nodes of the same release build on 127.0.0.1, each with its own data dir under
# the run's work dir, then
#   - produce 1 KiB × 6 partitions, replication factor 3, min.insync.replicas=2,
#     acks=all (target: at least 40 % of the single-node acks=1 row of this run);
#   - end-to-end latency at LAT_RATE msg/s, 1 partition, replication factor 3,
#     acks=all, linger.ms=5 (target: p99 under 20 ms).
# The three nodes share the two cores with each other and with the clients.
# Sets CLUSTER_ROWS, CLUSTER_LAT_LINE, CLUSTER_TARGETS and adds to NOTES.

CLUSTER_ROWS=()
CLUSTER_TARGETS=()
CLUSTER_LAT_LINE=""
CLUSTER_BROKERS=""

start_cluster() {
  local n ports=() controller_ports=() voters=""
  for n in 1 2 3; do ports[n]="$(free_port)"; controller_ports[n]="$(free_port)"; done
  for n in 1 2 3; do voters+="${voters:+,}$n@127.0.0.1:${controller_ports[n]}"; done
  for n in 1 2 3; do
    mkdir -p "$WORK/cluster/node$n"
    "$WEIR" --override "node.id=$n" --override "process.roles=broker,controller" \
      --override "listeners=PLAINTEXT://127.0.0.1:${ports[n]},CONTROLLER://127.0.0.1:${controller_ports[n]}" \
      --override "advertised.listeners=PLAINTEXT://127.0.0.1:${ports[n]}" \
      --override "controller.listener.names=CONTROLLER" --override "controller.quorum.voters=$voters" \
      --override "log.dirs=$WORK/cluster/node$n" >"$LOGS/cluster-node$n.stderr" 2>&1 &
    CLUSTER_PIDS+=($!)
    CLUSTER_BROKERS+="${CLUSTER_BROKERS:+,}127.0.0.1:${ports[n]}"
  done
  for n in 1 2 3; do
    wait_started "${CLUSTER_PIDS[n - 1]}" "$LOGS/cluster-node$n.stderr" 60 || return 1
  done
  log "cluster up on $CLUSTER_BROKERS"
}

# Until every partition of the cluster's topics has its full ISR (kafka-topics prints none under-replicated).
wait_full_isr() {
  local out
  [ -x "$KAFKA_TOPICS" ] || { sleep 5; return 0; }
  for _ in $(seq 30); do
    if out="$(timeout 60 "$KAFKA_TOPICS" --bootstrap-server "$CLUSTER_BROKERS" --describe \
                --under-replicated-partitions 2>>"$LOGS/topics.log")" && [ -z "$out" ]; then
      return 0
    fi
    sleep 1
  done
  log "partitions still under-replicated: $out"
}

cluster_rows() {
  if ! start_cluster; then
    NOTES+=("- 3-node cluster rows: the cluster did not start (see bench/.build/last-logs/cluster-node*.stderr)")
    return 0
  fi
  MEASURED_PIDS=("${CLUSTER_PIDS[@]}")
  local topic=bench-cluster-s1024-p6-aall
  create_topic "$topic" 6 3
  wait_full_isr
  log "cluster: produce $MSGS x 1024 B, 6 partitions, replication factor 3, acks=all"
  run_measured "produce-$topic" "$RKP" -P -t "$topic" -b "$CLUSTER_BROKERS" -s 1024 -c "$MSGS" \
    -a -1 -X linger.ms=5 -i 5000
  parse_produce "$R_OUT"
  [ "$P_DELIV" = "$MSGS" ] || NOTES+=("- cluster produce 1 KiB × 6 partitions, RF 3, acks=all: only $P_DELIV of $MSGS delivered ($P_FAILED failed, exit $R_RC)")
  CLUSTER_ROWS+=("| produce, RF 3 | 1024 B | 6 | all | $P_MBS | $P_RATE | $P_DELIV/$MSGS | $R_CPU | $(mib "$R_RSS_KB") / $(mib "$R_HWM_KB") |")
  local share
  share="$(awk -v c="$P_MBS" -v s="${SINGLE_ACKS1_MBS:-0}" 'BEGIN{ if (s > 0) printf "%.0f", 100 * c / s; else print "n/a"}')"
  CLUSTER_TARGETS+=("| produce 1 KiB × 6 partitions, RF 3, acks=all ≥ 40 % of the single-node acks=1 row ($SINGLE_ACKS1_MBS MB/s) | $P_MBS MB/s ($share %) |")
  if [ "$share" = n/a ] || [ "$share" -lt 40 ]; then
    NOTES+=("- cluster produce 1 KiB × 6 partitions, RF 3, acks=all: $P_MBS MB/s, $share % of the single-node acks=1 row — below target (≥ 40 %)")
  fi

  wait_full_isr
  measure_latency cluster-lat 5 -1 3
  CLUSTER_ROWS+=("| e2e latency, RF 3, linger.ms=5 | 100 B | 1 | all | $P_MBS | $P_RATE | $L_N/$LAT_MSGS | $R_CPU | $(mib "$R_RSS_KB") / $(mib "$R_HWM_KB") |")
  CLUSTER_LAT_LINE="| $LAT_RATE msg/s, RF 3, acks=all, linger.ms=5 | $L_N | $L_P50 | $L_P90 | $L_P99 | $L_MAX |"
  CLUSTER_TARGETS+=("| end-to-end p99 < 20 ms at $LAT_RATE msg/s, RF 3, acks=all | $L_P99 ms |")
  if [ "$L_P99" = n/a ] || ! awk -v p="$L_P99" 'BEGIN{exit !(p < 20)}'; then
    NOTES+=("- cluster end-to-end p99 at $LAT_RATE msg/s, RF 3, acks=all: $L_P99 ms — below target (< 20 ms)")
  fi
  MEASURED_PIDS=("$BROKER_PID")
}

cluster_report() {
  [ ${#CLUSTER_ROWS[@]} -gt 0 ] || return 0
  cat <<EOT

## 3-node cluster

Three combined broker+controller nodes (\`process.roles=broker,controller\`) of the
same build on 127.0.0.1, each with its own data dir on the same disk, sharing the
two cores with each other and with the client. Topics: replication factor 3,
\`min.insync.replicas=2\`; a row starts once every ISR is full. Broker CPU s and
RSS / HWM are summed over the three nodes.

| row | msg size | partitions | acks | MB/s | msgs/s | messages | broker CPU s (3 nodes) | RSS / HWM MiB (3 nodes) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
EOT
  printf '%s\n' "${CLUSTER_ROWS[@]}"
  cat <<EOT

End-to-end latency on the cluster (as above: producer wall clock → consumer receipt,
100 B, 1 partition; acks=all, so a record is readable once both followers have it):

| target rate | messages received | p50 ms | p90 ms | p99 ms | max ms |
| --- | --- | --- | --- | --- | --- |
$CLUSTER_LAT_LINE

| target | measured |
| --- | --- |
EOT
  printf '%s\n' "${CLUSTER_TARGETS[@]}"
}
