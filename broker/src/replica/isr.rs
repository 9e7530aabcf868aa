//! Sending a leader's ISR changes to the controller (AlterPartition), and
//! the periodic check that drops followers that stopped catching up.
//!
//! A change runs in its own task: the fetch that made an expansion due is
//! answered at once. The controller's answer (or refusal) is handed back to
//! the partition, which then allows the next change; the committed ISR also
//! arrives with the metadata image.

use std::sync::Arc;

use tracing::{debug, info};
use weir_controller::{AlterPartition, ControllerOperations};

use super::leader::IsrProposal;
use super::{now_ms, Partition};
use crate::broker::Broker;

/// Sends `proposal` for `partition` to the controller in the background.
pub fn propose(broker: &Arc<Broker>, partition: Arc<Partition>, proposal: IsrProposal) {
    let broker = broker.clone();
    tokio::spawn(async move {
        let change = AlterPartition {
            broker_id: broker.config.node_id,
            broker_epoch: broker.membership.epoch(),
            topic_id: partition.topic_id,
            partition: partition.index,
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal.new_isr.clone(),
            joining_broker_epochs: proposal.joining_broker_epochs.clone(),
        };
        match broker.controller.alter_partition(change).await {
            Ok(registration) => {
                info!(partition = %partition.name(), isr = ?registration.isr, partition_epoch = registration.partition_epoch, "ISR change committed");
                partition.isr_change_completed(
                    &proposal,
                    Some((registration.leader_epoch, registration.partition_epoch, registration.isr)),
                );
            }
            Err(e) => {
                debug!(partition = %partition.name(), isr = ?proposal.new_isr, error = %e, "ISR change refused");
                partition.isr_change_completed(&proposal, None);
            }
        }
    });
}

/// Proposes an ISR shrink for every partition led here whose followers
/// have not caught up for `replica.lag.time.max.ms` (Kafka's
/// `maybeShrinkIsr`, run every half of it).
pub fn shrink_lagging(broker: &Arc<Broker>) {
    let now = now_ms();
    let lag = broker.config.replication.lag_time_max_ms;
    for partition in broker.replicas.all() {
        if let Some(proposal) = partition.shrink_isr_if_due(now, lag) {
            propose(broker, partition, proposal);
        }
    }
}
