//! Broker configuration: one flat map of Kafka property names, read from
//! `weir.yaml`, then `WEIR_*` environment variables, then `--override
//! key=value` flags (later sources win), with Kafka's defaults for every key
//! left unset.
//!
//! The raw map is kept so DescribeConfigs can tell which keys were set
//! (STATIC_BROKER_CONFIG) from those left at their default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::net::quotas::ConnectionLimits;

/// One `NAME://host:port` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener name (PLAINTEXT).
    pub name: String,
    /// Host to bind or advertise; empty binds every interface.
    pub host: String,
    /// TCP port; 0 picks a free one when binding.
    pub port: u16,
}

impl Listener {
    fn parse_list(value: &str) -> anyhow::Result<Vec<Listener>> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (name, rest) = s.split_once("://").with_context(|| format!("listener {s:?} lacks NAME://"))?;
                let (host, port) = rest.rsplit_once(':').with_context(|| format!("listener {s:?} lacks a port"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
                let port = port.parse().with_context(|| format!("listener {s:?} has a bad port"))?;
                Ok(Listener { name: name.to_string(), host, port })
            })
            .collect()
    }
}

/// The roles of this node (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessRoles {
    /// `broker,controller`: a voter of the metadata quorum that is also a
    /// broker (the default).
    Combined,
    /// `broker`: a broker that follows the quorum as an observer.
    Broker,
    /// `controller`: a voter that serves only the quorum, on its controller
    /// listener, and no clients (KRaft's dedicated controller).
    Controller,
}

/// How followers replicate (Kafka's `replica.*` properties, same defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `num.replica.fetchers`: fetcher tasks per source broker.
    pub num_replica_fetchers: usize,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this
    /// long leaves the ISR.
    pub lag_time_max_ms: i64,
    /// `replica.fetch.max.bytes`: per partition of a replica fetch.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: per replica fetch response.
    pub fetch_response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`: how long a replica fetch long-polls.
    pub fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `replica.fetch.backoff.ms`: the pause after a failed replica fetch.
    pub fetch_backoff_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often the log
    /// dir's `replication-offset-checkpoint` is written.
    pub high_watermark_checkpoint_interval_ms: u64,
    /// `replica.selector.class` names Kafka's `RackAwareReplicaSelector`:
    /// a leader sends consumers that give a `client.rack` to an in-sync
    /// follower in that rack (KIP-392).
    pub rack_aware_replica_selector: bool,
}

/// The typed broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Every property that was set, by Kafka name.
    pub raw: BTreeMap<String, String>,
    /// `node.id`.
    pub node_id: i32,
    /// `listeners` that serve clients (every listener but the controller's).
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` (defaults to `listeners`, with `localhost` for
    /// an empty host); never the controller listener.
    pub advertised_listeners: Vec<Listener>,
    /// `process.roles`.
    pub process_roles: ProcessRoles,
    /// The listener named by `controller.listener.names`, which serves the
    /// metadata quorum's RPCs; none for a quorum of this node alone.
    pub controller_listener: Option<Listener>,
    /// `controller.quorum.voters` (`id@host:port,...`): node id ->
    /// controller listener address. Empty means this node alone.
    pub quorum_voters: BTreeMap<i32, String>,
    /// Where a broker-only node reaches the voters' controller listeners:
    /// `controller.quorum.bootstrap.servers`, else the voters' addresses.
    /// Empty for a node with the controller role.
    pub controller_bootstrap: Vec<String>,
    /// `broker.heartbeat.interval.ms`: how often the broker heartbeats to the
    /// active controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: the active controller fences a broker it
    /// has not heard from for this long.
    pub broker_session_timeout_ms: u64,
    /// `unclean.leader.election.enable`: the default for topics that do not set it.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`: the active controller moves leadership
    /// back to preferred replicas every `leader.imbalance.check.interval.seconds`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `log.dirs` (or `log.dir`).
    pub log_dirs: Vec<PathBuf>,
    /// `metadata.log.dir`, defaulting to the first log dir.
    pub metadata_log_dir: PathBuf,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `queued.max.request.bytes`: the memory pool of requests read and not
    /// yet handled; 0 or less (Kafka's default, -1) is unbounded.
    pub queued_max_request_bytes: i64,
    /// `fetch.max.bytes`: the most a Fetch response carries, whatever the
    /// client asks (at least one batch is always returned).
    pub fetch_max_bytes: i32,
    /// `max.request.partition.size.limit`: the most partitions a
    /// DescribeTopicPartitions answer carries.
    pub max_request_partition_size_limit: i32,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// Follower replication (`replica.*`, `num.replica.fetchers`).
    pub replication: ReplicationConfig,
    /// `log.flush.scheduler.interval.ms`: how often `flush.ms` is checked.
    pub log_flush_scheduler_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms`: how often the log dir's
    /// `recovery-point-offset-checkpoint` is written.
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`: bytes of metadata
    /// records between two snapshots of the metadata quorum.
    pub metadata_snapshot_max_bytes: u64,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (capped at the live brokers).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`.
    pub offsets_topic_segment_bytes: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.max.size`.
    pub group_max_size: usize,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups).
    pub group_consumer_heartbeat_interval_ms: u64,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups).
    pub group_consumer_session_timeout_ms: u64,
    /// `group.consumer.max.size` (KIP-848 groups).
    pub group_consumer_max_size: usize,
    /// `group.consumer.assignors`: server assignor names, the default first.
    pub group_consumer_assignors: Vec<String>,
    /// `group.consumer.migration.policy`: whether a classic group with
    /// members may become a consumer group (upgrade) and back (downgrade).
    pub group_consumer_migration: (bool, bool),
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `max.connections`, `max.connections.per.ip` and
    /// `max.connections.per.ip.overrides`.
    pub connection_limits: ConnectionLimits,
}

const DEFAULT_LISTENERS: &str = "PLAINTEXT://:9092";

impl BrokerConfig {
    /// Reads the YAML file (if any), then the environment, then the overrides.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> anyhow::Result<BrokerConfig> {
        let mut raw = BTreeMap::new();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            raw.extend(parse_yaml(&text).with_context(|| format!("parsing {}", path.display()))?);
        }
        for (key, value) in std::env::vars() {
            if let Some(name) = key.strip_prefix("WEIR_") {
                raw.insert(name.to_ascii_lowercase().replace('_', "."), value);
            }
        }
        for item in overrides {
            let (key, value) = item.split_once('=').with_context(|| format!("--override {item:?} is not key=value"))?;
            raw.insert(key.trim().to_string(), value.trim().to_string());
        }
        Self::from_raw(raw)
    }

    /// Builds the typed view of a raw property map.
    pub fn from_raw(raw: BTreeMap<String, String>) -> anyhow::Result<BrokerConfig> {
        let get = |k: &str| raw.get(k).map(String::as_str);
        let process_roles = process_roles(get("process.roles"))?;
        let node_id = parse(&raw, "node.id", 1)?;
        let (listeners, controller_listener) = split_controller_listener(
            Listener::parse_list(get("listeners").unwrap_or(DEFAULT_LISTENERS))?,
            &raw,
            process_roles,
        )?;
        match (process_roles, listeners.first()) {
            (ProcessRoles::Controller, Some(client)) => bail!(
                "listeners has the broker listener {}, but process.roles=controller: a controller-only node serves \
                 only its controller listener (controller.listener.names)",
                client.name
            ),
            (ProcessRoles::Combined | ProcessRoles::Broker, None) => bail!("listeners names no broker listener"),
            _ => {}
        }
        let quorum_voters = quorum_voters(&raw, node_id, process_roles, controller_listener.as_ref())?;
        let controller_bootstrap = match process_roles {
            ProcessRoles::Combined | ProcessRoles::Controller => Vec::new(),
            ProcessRoles::Broker => {
                let servers = bootstrap_servers(&raw)?;
                let servers = if servers.is_empty() { quorum_voters.values().cloned().collect() } else { servers };
                if servers.is_empty() {
                    bail!(
                        "process.roles=broker needs the controllers: set controller.quorum.bootstrap.servers or \
                         controller.quorum.voters"
                    );
                }
                servers
            }
        };
        let advertised_listeners = match get("advertised.listeners") {
            Some(v) => {
                let names = controller_listener_names(&raw);
                Listener::parse_list(v)?.into_iter().filter(|l| !names.contains(&l.name)).collect()
            }
            None => listeners
                .iter()
                .map(|l| Listener {
                    host: if l.host.is_empty() || l.host == "0.0.0.0" || l.host == "::" {
                        "localhost".into()
                    } else {
                        l.host.clone()
                    },
                    ..l.clone()
                })
                .collect(),
        };
        let log_dirs: Vec<PathBuf> = get("log.dirs")
            .or(get("log.dir"))
            .unwrap_or("/tmp/kafka-logs")
            .split(',')
            .map(|s| PathBuf::from(s.trim()))
            .collect();
        let metadata_log_dir = get("metadata.log.dir").map(PathBuf::from).unwrap_or_else(|| log_dirs[0].clone());
        let socket_request_max_bytes =
            parse(&raw, "socket.request.max.bytes", weir_protocol::frame::DEFAULT_MAX_REQUEST_BYTES)?;
        Ok(BrokerConfig {
            node_id,
            listeners,
            advertised_listeners,
            process_roles,
            controller_listener,
            quorum_voters,
            controller_bootstrap,
            broker_heartbeat_interval_ms: parse(&raw, "broker.heartbeat.interval.ms", 2_000)?,
            broker_session_timeout_ms: parse(&raw, "broker.session.timeout.ms", 9_000)?,
            unclean_leader_election_enable: parse(&raw, "unclean.leader.election.enable", false)?,
            auto_leader_rebalance_enable: parse(&raw, "auto.leader.rebalance.enable", true)?,
            leader_imbalance_check_interval_seconds: parse::<u64>(
                &raw,
                "leader.imbalance.check.interval.seconds",
                300,
            )?
            .max(1),
            log_dirs,
            metadata_log_dir,
            num_partitions: parse(&raw, "num.partitions", 1)?,
            default_replication_factor: parse(&raw, "default.replication.factor", 1)?,
            auto_create_topics_enable: parse(&raw, "auto.create.topics.enable", true)?,
            socket_request_max_bytes,
            queued_max_request_bytes: queued_max_request_bytes(&raw, socket_request_max_bytes)?,
            fetch_max_bytes: fetch_max_bytes(&raw)?,
            max_request_partition_size_limit: parse::<i32>(&raw, "max.request.partition.size.limit", 2000)?.max(1),
            log_retention_check_interval_ms: parse(&raw, "log.retention.check.interval.ms", 300_000)?,
            replication: ReplicationConfig {
                num_replica_fetchers: parse::<usize>(&raw, "num.replica.fetchers", 1)?.max(1),
                lag_time_max_ms: parse(&raw, "replica.lag.time.max.ms", 30_000)?,
                fetch_max_bytes: parse(&raw, "replica.fetch.max.bytes", 1_048_576)?,
                fetch_response_max_bytes: parse(&raw, "replica.fetch.response.max.bytes", 10_485_760)?,
                fetch_wait_max_ms: parse(&raw, "replica.fetch.wait.max.ms", 500)?,
                fetch_min_bytes: parse(&raw, "replica.fetch.min.bytes", 1)?,
                fetch_backoff_ms: parse(&raw, "replica.fetch.backoff.ms", 1_000)?,
                high_watermark_checkpoint_interval_ms: parse(
                    &raw,
                    "replica.high.watermark.checkpoint.interval.ms",
                    5_000,
                )?,
                rack_aware_replica_selector: rack_aware_replica_selector(&raw)?,
            },
            log_flush_scheduler_interval_ms: parse(&raw, "log.flush.scheduler.interval.ms", 1_000)?,
            log_flush_offset_checkpoint_interval_ms: parse(&raw, "log.flush.offset.checkpoint.interval.ms", 60_000)?,
            metadata_snapshot_max_bytes: parse(&raw, "metadata.log.max.record.bytes.between.snapshots", 20_971_520)?,
            offsets_topic_num_partitions: parse(&raw, "offsets.topic.num.partitions", 50)?,
            offsets_topic_replication_factor: parse(&raw, "offsets.topic.replication.factor", 3)?,
            offsets_topic_segment_bytes: parse(&raw, "offsets.topic.segment.bytes", 104_857_600)?,
            offset_metadata_max_bytes: parse(&raw, "offset.metadata.max.bytes", 4096)?,
            group_min_session_timeout_ms: parse(&raw, "group.min.session.timeout.ms", 6_000)?,
            group_max_session_timeout_ms: parse(&raw, "group.max.session.timeout.ms", 1_800_000)?,
            group_initial_rebalance_delay_ms: parse(&raw, "group.initial.rebalance.delay.ms", 3_000)?,
            group_max_size: parse(&raw, "group.max.size", i32::MAX as usize)?,
            group_consumer_heartbeat_interval_ms: parse(&raw, "group.consumer.heartbeat.interval.ms", 5_000)?,
            group_consumer_session_timeout_ms: parse(&raw, "group.consumer.session.timeout.ms", 45_000)?,
            group_consumer_max_size: parse(&raw, "group.consumer.max.size", i32::MAX as usize)?,
            group_consumer_assignors: consumer_assignors(&raw)?,
            group_consumer_migration: migration_policy(&raw)?,
            offsets_retention_minutes: parse(&raw, "offsets.retention.minutes", 10_080)?,
            offsets_retention_check_interval_ms: parse(&raw, "offsets.retention.check.interval.ms", 600_000)?,
            connection_limits: connection_limits(&raw)?,
            raw,
        })
    }

    /// The broker property (as set by the operator) that supplies the
    /// default of a topic config whose broker synonym is `synonym`, and its
    /// value in the topic config's unit: `log.retention.ms` also has
    /// minutes and hours forms, `log.roll.ms` and `log.roll.jitter.ms` hours.
    pub fn broker_synonym_value(&self, synonym: &str) -> Option<(String, String)> {
        let scaled = |k: &str, factor: i64| {
            self.raw
                .get(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|v| (k.to_string(), v.saturating_mul(factor).to_string()))
        };
        let direct = self.raw.get(synonym).map(|v| (synonym.to_string(), v.clone()));
        match synonym {
            "log.retention.ms" => direct
                .or_else(|| scaled("log.retention.minutes", 60_000))
                .or_else(|| scaled("log.retention.hours", 3_600_000)),
            "log.roll.ms" => direct.or_else(|| scaled("log.roll.hours", 3_600_000)),
            "log.roll.jitter.ms" => direct.or_else(|| scaled("log.roll.jitter.hours", 3_600_000)),
            _ => direct,
        }
    }
}

/// `fetch.max.bytes`: Kafka's default is 55 MiB, and it must be at least 1024.
/// `process.roles`: a combined broker and controller (KRaft's combined
/// mode, and the default), a broker alone, which follows the quorum as an
/// observer, or a controller alone.
fn process_roles(value: Option<&str>) -> anyhow::Result<ProcessRoles> {
    let Some(value) = value else { return Ok(ProcessRoles::Combined) };
    let mut roles: Vec<&str> = value.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
    roles.sort_unstable();
    roles.dedup();
    for role in &roles {
        if *role != "broker" && *role != "controller" {
            bail!("process.roles: unknown role {role:?} (the roles are broker and controller)");
        }
    }
    match roles.as_slice() {
        ["broker", "controller"] => Ok(ProcessRoles::Combined),
        ["broker"] => Ok(ProcessRoles::Broker),
        ["controller"] => Ok(ProcessRoles::Controller),
        _ => bail!("process.roles is empty: name broker, controller or both"),
    }
}

/// `controller.quorum.bootstrap.servers`: `host:port` entries.
fn bootstrap_servers(raw: &BTreeMap<String, String>) -> anyhow::Result<Vec<String>> {
    let value = raw.get("controller.quorum.bootstrap.servers").map(String::as_str).unwrap_or("");
    let mut servers = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some(address) = host_port(entry) else {
            bail!("controller.quorum.bootstrap.servers: {entry:?} is not host:port");
        };
        servers.push(address);
    }
    Ok(servers)
}

/// `host:port` with IPv6 hosts in brackets, as a socket address string.
fn host_port(entry: &str) -> Option<String> {
    let (host, port) = entry.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

impl BrokerConfig {
    /// The name of the voters' controller listener: this node's own, or on a
    /// broker-only node the first of `controller.listener.names`.
    pub fn controller_listener_name(&self) -> String {
        match &self.controller_listener {
            Some(listener) => listener.name.clone(),
            None => controller_listener_names(&self.raw).into_iter().next().unwrap_or_else(|| "CONTROLLER".to_string()),
        }
    }
}

/// `controller.listener.names`, Kafka's default being `CONTROLLER`.
fn controller_listener_names(raw: &BTreeMap<String, String>) -> Vec<String> {
    raw.get("controller.listener.names")
        .map(String::as_str)
        .unwrap_or("CONTROLLER")
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Splits `listeners` into the client listeners and the controller listener
/// (the first one `controller.listener.names` names; Kafka's controllers also
/// serve the first only). On a broker-only node the names tell the voters'
/// listener, which is not among this node's own.
fn split_controller_listener(
    listeners: Vec<Listener>,
    raw: &BTreeMap<String, String>,
    roles: ProcessRoles,
) -> anyhow::Result<(Vec<Listener>, Option<Listener>)> {
    let names = controller_listener_names(raw);
    let (controller, clients): (Vec<Listener>, Vec<Listener>) =
        listeners.into_iter().partition(|l| names.contains(&l.name));
    let named = raw.contains_key("controller.listener.names") || roles == ProcessRoles::Controller;
    if roles != ProcessRoles::Broker && named && controller.is_empty() {
        bail!("controller.listener.names={} names no listener in listeners", names.join(","));
    }
    if controller.len() > 1 {
        bail!("listeners has {} controller listeners; Weir serves the quorum on one", controller.len());
    }
    Ok((clients, controller.into_iter().next()))
}

/// `controller.quorum.voters`: `id@host:port` entries. A combined node must
/// be one of them, and one of several needs a controller listener; a
/// broker-only node must not be one.
fn quorum_voters(
    raw: &BTreeMap<String, String>,
    node_id: i32,
    roles: ProcessRoles,
    controller_listener: Option<&Listener>,
) -> anyhow::Result<BTreeMap<i32, String>> {
    if roles != ProcessRoles::Broker
        && raw.get("controller.quorum.bootstrap.servers").is_some_and(|v| !v.trim().is_empty())
        && raw.get("controller.quorum.voters").is_none_or(|v| v.trim().is_empty())
    {
        bail!(
            "controller.quorum.bootstrap.servers without controller.quorum.voters: Weir's quorum has a static voter \
             set (KIP-853 dynamic voters are not supported yet); list the voters in controller.quorum.voters"
        );
    }
    let mut voters = BTreeMap::new();
    let value = raw.get("controller.quorum.voters").map(String::as_str).unwrap_or("");
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('@').and_then(|(id, address)| {
            let id: i32 = id.trim().parse().ok().filter(|id| *id >= 0)?;
            Some((id, host_port(address)?))
        });
        let Some((id, address)) = parsed else {
            bail!("controller.quorum.voters: {entry:?} is not id@host:port");
        };
        if voters.insert(id, address).is_some() {
            bail!("controller.quorum.voters names node {id} twice");
        }
    }
    if roles == ProcessRoles::Broker {
        if voters.contains_key(&node_id) {
            bail!(
                "node.id {node_id} is one of controller.quorum.voters ({value}), but process.roles=broker: a \
                 broker-only node must not be a voter"
            );
        }
        if let Some(listener) = controller_listener {
            bail!(
                "listeners has the controller listener {}, but process.roles=broker: controller.listener.names must \
                 not name a listener of a broker-only node",
                listener.name
            );
        }
        return Ok(voters);
    }
    if voters.is_empty() {
        if roles == ProcessRoles::Controller {
            bail!("process.roles=controller needs controller.quorum.voters, this node among them");
        }
        return Ok(voters);
    }
    if !voters.contains_key(&node_id) {
        bail!(
            "node.id {node_id} is not one of controller.quorum.voters ({value}): a node with the controller role \
             must be a voter (process.roles=broker makes it a broker that follows the quorum)"
        );
    }
    if let (Some(listener), Some(own)) = (controller_listener, voters.get(&node_id)) {
        let voter_port = own.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok());
        if listener.port != 0 && voter_port != Some(listener.port) {
            bail!(
                "controller.quorum.voters gives node {node_id}'s controller as {own}, but its {} listener is on port {} \
                 (is another node using node.id {node_id}?)",
                listener.name,
                listener.port
            );
        }
    }
    if voters.len() > 1 && controller_listener.is_none() {
        bail!(
            "controller.quorum.voters names {} voters, but listeners has no controller listener (a listener named in \
             controller.listener.names, CONTROLLER by default)",
            voters.len()
        );
    }
    Ok(voters)
}

/// `replica.selector.class`: unset (the leader serves every consumer) or
/// Kafka's rack-aware selector; a class Weir does not implement is refused
/// at startup, as Kafka refuses a class it cannot load.
fn rack_aware_replica_selector(raw: &BTreeMap<String, String>) -> anyhow::Result<bool> {
    match raw.get("replica.selector.class").map(|s| s.trim()) {
        None | Some("") => Ok(false),
        Some("org.apache.kafka.common.replica.RackAwareReplicaSelector") => Ok(true),
        Some(other) => bail!(
            "config replica.selector.class={other:?}: Weir implements \
             org.apache.kafka.common.replica.RackAwareReplicaSelector only"
        ),
    }
}

fn fetch_max_bytes(raw: &BTreeMap<String, String>) -> anyhow::Result<i32> {
    let value: i32 = parse(raw, "fetch.max.bytes", 57_671_680)?;
    anyhow::ensure!(value >= 1024, "config fetch.max.bytes={value}: must be at least 1024");
    Ok(value)
}

/// `queued.max.request.bytes` (Kafka's long, default -1 = unbounded). As
/// Kafka requires, a bound must hold at least one request of
/// `socket.request.max.bytes`.
fn queued_max_request_bytes(raw: &BTreeMap<String, String>, socket_request_max_bytes: usize) -> anyhow::Result<i64> {
    let value: i64 = parse(raw, "queued.max.request.bytes", -1)?;
    if value > 0 && u64::try_from(value).unwrap_or(0) < socket_request_max_bytes as u64 {
        bail!(
            "config queued.max.request.bytes={value}: must be larger or equal to socket.request.max.bytes \
             ({socket_request_max_bytes}), or 0 or less for no bound"
        );
    }
    Ok(value)
}

fn parse<T: std::str::FromStr>(raw: &BTreeMap<String, String>, key: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match raw.get(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e| anyhow::anyhow!("config {key}={v:?}: {e}")),
    }
}

/// Flattens a YAML document of Kafka properties into strings. Keys may be
/// written flat (`log.dirs: ./data`); lists become comma-separated values.
fn parse_yaml(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
    let mut out = BTreeMap::new();
    let serde_yaml_ng::Value::Mapping(map) = value else {
        if value.is_null() {
            return Ok(out);
        }
        bail!("the top level must be a mapping of Kafka property names");
    };
    for (key, value) in map {
        let key = scalar(&key).with_context(|| "a key is not a scalar")?;
        let value = match &value {
            serde_yaml_ng::Value::Sequence(items) => {
                items.iter().map(scalar).collect::<Option<Vec<_>>>().map(|v| v.join(","))
            }
            other => scalar(other),
        }
        .with_context(|| format!("{key}: value must be a scalar or a list"))?;
        out.insert(key, value);
    }
    Ok(out)
}

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Null => Some(String::new()),
        _ => None,
    }
}

/// `group.consumer.assignors`: short names (`uniform`, `range`) or Kafka's
/// class names for them; the first is the default.
fn consumer_assignors(raw: &BTreeMap<String, String>) -> anyhow::Result<Vec<String>> {
    let Some(value) = raw.get("group.consumer.assignors") else {
        return Ok(crate::group::consumer::assignor::ASSIGNOR_NAMES.iter().map(|s| s.to_string()).collect());
    };
    let mut names = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = match item {
            "org.apache.kafka.coordinator.group.assignor.UniformAssignor" => "uniform",
            "org.apache.kafka.coordinator.group.assignor.RangeAssignor" => "range",
            other => other,
        };
        if crate::group::consumer::assignor::by_name(name).is_none() {
            bail!("config group.consumer.assignors: unknown assignor {item:?} (this broker has uniform and range)");
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        bail!("config group.consumer.assignors: at least one assignor is needed");
    }
    Ok(names)
}

/// `group.consumer.migration.policy` (Kafka's names, any case): which
/// online migrations between classic and consumer groups are allowed, as
/// (upgrade, downgrade). Kafka 3.9's default is both.
fn migration_policy(raw: &BTreeMap<String, String>) -> anyhow::Result<(bool, bool)> {
    let value = raw.get("group.consumer.migration.policy").map(|v| v.trim().to_ascii_lowercase());
    Ok(match value.as_deref().unwrap_or("bidirectional") {
        "bidirectional" => (true, true),
        "upgrade" => (true, false),
        "downgrade" => (false, true),
        "disabled" => (false, false),
        other => bail!(
            "config group.consumer.migration.policy: {other:?} is not one of disabled, upgrade, downgrade, bidirectional"
        ),
    })
}

/// `max.connections` and `max.connections.per.ip` (Kafka's ints, at least 0,
/// default `Int.MaxValue`) and `max.connections.per.ip.overrides`
/// (`host:count,host:count`; a host name stands for every address it
/// resolves to). As in Kafka, a per-IP maximum of 0 needs overrides.
fn connection_limits(raw: &BTreeMap<String, String>) -> anyhow::Result<ConnectionLimits> {
    let non_negative = |key: &str| -> anyhow::Result<usize> {
        let v: i32 = parse(raw, key, i32::MAX)?;
        usize::try_from(v).map_err(|_| anyhow::anyhow!("config {key}={v}: must be at least 0"))
    };
    let max_connections = non_negative("max.connections")?;
    let max_per_ip = non_negative("max.connections.per.ip")?;
    let mut per_ip_overrides = std::collections::HashMap::new();
    let key = "max.connections.per.ip.overrides";
    for item in raw.get(key).map(String::as_str).unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, count) =
            item.rsplit_once(':').with_context(|| format!("config {key}: {item:?} is not host:count"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let count: i32 = count.trim().parse().map_err(|e| anyhow::anyhow!("config {key}: {item:?}: {e}"))?;
        let count =
            usize::try_from(count).map_err(|_| anyhow::anyhow!("config {key}: {item:?}: must be at least 0"))?;
        let addresses: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, 0))
                .with_context(|| format!("config {key}: cannot resolve {host:?}"))?
                .map(|a| a.ip())
                .collect(),
        };
        for ip in addresses {
            per_ip_overrides.insert(crate::net::quotas::canonical(ip), count);
        }
    }
    if max_per_ip == 0 && per_ip_overrides.is_empty() {
        bail!("config max.connections.per.ip can be set to zero only if max.connections.per.ip.overrides is set");
    }
    Ok(ConnectionLimits { max_connections, max_per_ip, per_ip_overrides })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_then_overrides_with_kafka_defaults() {
        let mut raw = parse_yaml(
            "node.id: 3\nlisteners: PLAINTEXT://127.0.0.1:0\nlog.dirs: [a, b]\nauto.create.topics.enable: false\n",
        )
        .unwrap();
        raw.insert("num.partitions".into(), "6".into());
        let c = BrokerConfig::from_raw(raw).unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.listeners[0], Listener { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 0 });
        assert_eq!(c.advertised_listeners[0].host, "127.0.0.1");
        assert_eq!(c.log_dirs, vec![PathBuf::from("a"), PathBuf::from("b")]);
        assert!(!c.auto_create_topics_enable);
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
    }

    #[test]
    fn empty_host_advertises_localhost_and_units_convert() {
        let mut raw = BTreeMap::new();
        raw.insert("log.retention.hours".to_string(), "2".to_string());
        let c = BrokerConfig::from_raw(raw).unwrap();
        assert_eq!(c.listeners[0].host, "");
        assert_eq!(c.advertised_listeners[0].host, "localhost");
        assert_eq!(
            c.broker_synonym_value("log.retention.ms").unwrap(),
            ("log.retention.hours".to_string(), "7200000".to_string())
        );
        assert!(BrokerConfig::from_raw([("node.id".to_string(), "x".to_string())].into()).is_err());
    }

    #[test]
    fn migration_policy_takes_kafkas_names_in_any_case() {
        let policy =
            |v: &str| migration_policy(&[("group.consumer.migration.policy".to_string(), v.to_string())].into());
        assert_eq!(migration_policy(&BTreeMap::new()).unwrap(), (true, true));
        assert_eq!(policy("UPGRADE").unwrap(), (true, false));
        assert_eq!(policy("downgrade").unwrap(), (false, true));
        assert_eq!(policy("Disabled").unwrap(), (false, false));
        assert!(policy("sideways").is_err());
    }

    #[test]
    fn queued_max_request_bytes_is_unbounded_by_default_and_holds_a_whole_request() {
        let config = |pairs: &[(&str, &str)]| {
            BrokerConfig::from_raw(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        assert_eq!(config(&[]).unwrap().queued_max_request_bytes, -1);
        assert_eq!(config(&[("queued.max.request.bytes", "0")]).unwrap().queued_max_request_bytes, 0);
        assert_eq!(config(&[("queued.max.request.bytes", "104857600")]).unwrap().queued_max_request_bytes, 104_857_600);
        // Below the default socket.request.max.bytes (100 MiB): refused, as Kafka refuses it.
        assert!(config(&[("queued.max.request.bytes", "33554432")]).is_err());
        let c = config(&[("queued.max.request.bytes", "33554432"), ("socket.request.max.bytes", "33554432")]).unwrap();
        assert_eq!((c.queued_max_request_bytes, c.socket_request_max_bytes), (33_554_432, 33_554_432));
        assert!(config(&[("queued.max.request.bytes", "lots")]).is_err());
    }

    #[test]
    fn connection_limits_with_kafkas_names_and_defaults() {
        let limits = |pairs: &[(&str, &str)]| {
            connection_limits(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        assert_eq!(limits(&[]).unwrap(), ConnectionLimits::unlimited());
        let l = limits(&[
            ("max.connections", "100"),
            ("max.connections.per.ip", "5"),
            ("max.connections.per.ip.overrides", "127.0.0.1:10, [::1]:7,"),
        ])
        .unwrap();
        assert_eq!((l.max_connections, l.max_per_ip), (100, 5));
        assert_eq!(l.per_ip_overrides.get(&"127.0.0.1".parse().unwrap()), Some(&10));
        assert_eq!(l.per_ip_overrides.get(&"::1".parse().unwrap()), Some(&7));
        assert!(limits(&[("max.connections", "-1")]).is_err());
        assert!(limits(&[("max.connections.per.ip", "0")]).is_err());
        assert!(limits(&[("max.connections.per.ip", "0"), ("max.connections.per.ip.overrides", "10.0.0.1:2")]).is_ok());
        assert!(limits(&[("max.connections.per.ip.overrides", "10.0.0.1")]).is_err());
        assert!(limits(&[("max.connections.per.ip.overrides", "10.0.0.1:x")]).is_err());
    }

    #[test]
    fn cluster_keys_split_the_controller_listener_and_read_the_voters() {
        let config = |pairs: &[(&str, &str)]| {
            BrokerConfig::from_raw(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let node = [
            ("node.id", "2"),
            ("process.roles", "controller, broker"),
            ("listeners", "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:19093"),
            ("controller.quorum.voters", "1@127.0.0.1:19092, 2@localhost:19093,3@[::1]:19094"),
        ];
        let c = config(&node).unwrap();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.advertised_listeners.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["PLAINTEXT"]);
        assert_eq!(c.controller_listener.as_ref().map(|l| l.port), Some(19093));
        assert_eq!(
            c.quorum_voters,
            BTreeMap::from([
                (1, "127.0.0.1:19092".to_string()),
                (2, "localhost:19093".to_string()),
                (3, "[::1]:19094".to_string())
            ])
        );
        // An advertised CONTROLLER listener is never told to clients.
        let mut advertised = node.to_vec();
        advertised.push(("advertised.listeners", "PLAINTEXT://h:9093,CONTROLLER://h:19093"));
        assert_eq!(config(&advertised).unwrap().advertised_listeners.len(), 1);
        // A single node needs none of it.
        let single = config(&[]).unwrap();
        assert!(single.controller_listener.is_none() && single.quorum_voters.is_empty());

        let refused = |change: (&str, &str), needle: &str| {
            let mut pairs: Vec<(&str, &str)> = node.iter().copied().filter(|(k, _)| *k != change.0).collect();
            pairs.push(change);
            let error = format!("{:#}", config(&pairs).unwrap_err());
            assert!(error.contains(needle), "{change:?}: {error}");
        };
        refused(("process.roles", "broker"), "must not be a voter");
        refused(("process.roles", "controller"), "but process.roles=controller");
        refused(("process.roles", ","), "process.roles is empty");
        refused(("process.roles", "broker,observer"), "unknown role");
        refused(("node.id", "4"), "not one of controller.quorum.voters");
        refused(("controller.quorum.voters", "1@a:1,1@b:2"), "twice");
        refused(("controller.quorum.voters", "1@a"), "not id@host:port");
        refused(("controller.quorum.voters", "x@a:1"), "not id@host:port");
        refused(("listeners", "PLAINTEXT://127.0.0.1:9093"), "no controller listener");
        refused(("listeners", "CONTROLLER://127.0.0.1:19093"), "no broker listener");
        refused(("controller.listener.names", "CTRL"), "names no listener");
        refused(("node.id", "1"), "but its CONTROLLER listener is on port 19093");
        assert!(format!("{:#}", config(&[("controller.quorum.bootstrap.servers", "127.0.0.1:19092")]).unwrap_err())
            .contains("static voter set"));
    }

    #[test]
    fn a_broker_only_node_follows_the_voters_it_is_given() {
        let config = |pairs: &[(&str, &str)]| {
            BrokerConfig::from_raw(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let node = [
            ("node.id", "4"),
            ("process.roles", "broker"),
            ("listeners", "PLAINTEXT://127.0.0.1:9095"),
            ("controller.quorum.bootstrap.servers", "127.0.0.1:19092, [::1]:19093"),
            ("controller.listener.names", "CONTROLLER"),
        ];
        let c = config(&node).unwrap();
        assert_eq!(c.process_roles, ProcessRoles::Broker);
        assert!(c.controller_listener.is_none() && c.quorum_voters.is_empty());
        assert_eq!(c.controller_bootstrap, ["127.0.0.1:19092", "[::1]:19093"]);
        // The voters serve as the bootstrap servers when those are not given.
        let by_voters = config(&[
            ("node.id", "4"),
            ("process.roles", "broker"),
            ("controller.quorum.voters", "1@127.0.0.1:19092,2@127.0.0.1:19093"),
        ])
        .unwrap();
        assert_eq!(by_voters.controller_bootstrap, ["127.0.0.1:19092", "127.0.0.1:19093"]);

        let refused = |change: (&str, &str), needle: &str| {
            let mut pairs: Vec<(&str, &str)> = node.iter().copied().filter(|(k, _)| *k != change.0).collect();
            pairs.push(change);
            let error = format!("{:#}", config(&pairs).unwrap_err());
            assert!(error.contains(needle), "{change:?}: {error}");
        };
        refused(("controller.quorum.bootstrap.servers", ""), "needs the controllers");
        refused(("controller.quorum.bootstrap.servers", "127.0.0.1"), "is not host:port");
        refused(("controller.quorum.voters", "4@127.0.0.1:19095"), "must not be a voter");
        refused(
            ("listeners", "PLAINTEXT://127.0.0.1:9095,CONTROLLER://127.0.0.1:19095"),
            "must not name a listener of a broker-only node",
        );
    }

    #[test]
    fn a_controller_only_node_serves_the_quorum_alone() {
        let config = |pairs: &[(&str, &str)]| {
            BrokerConfig::from_raw(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let node = [
            ("node.id", "2"),
            ("process.roles", "controller"),
            ("listeners", "CONTROLLER://127.0.0.1:19093"),
            ("controller.listener.names", "CONTROLLER"),
            ("controller.quorum.voters", "1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094"),
        ];
        let c = config(&node).unwrap();
        assert_eq!(c.process_roles, ProcessRoles::Controller);
        assert!(c.listeners.is_empty() && c.advertised_listeners.is_empty());
        assert_eq!(c.controller_listener.as_ref().map(|l| l.port), Some(19093));
        assert_eq!(c.quorum_voters.len(), 3);

        let refused = |change: (&str, &str), needle: &str| {
            let mut pairs: Vec<(&str, &str)> = node.iter().copied().filter(|(k, _)| *k != change.0).collect();
            pairs.push(change);
            let error = format!("{:#}", config(&pairs).unwrap_err());
            assert!(error.contains(needle), "{change:?}: {error}");
        };
        refused(("listeners", "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:19093"), "serves only its controller");
        refused(("listeners", "CTRL://127.0.0.1:19093"), "names no listener");
        refused(("controller.quorum.voters", ""), "needs controller.quorum.voters");
        refused(("node.id", "4"), "not one of controller.quorum.voters");
    }
}
