//! Broker lifecycle (registration, fencing, unfencing) and producer-id blocks;
//! `sessions.rs` decides when a broker is fenced or unfenced.
//!
//! Broker epoch = one past the image's last offset when the registration is
//! committed: at most the registration entry's own log offset, above every
//! earlier epoch. Fencing follows
//! KRaft's `handleBrokerFenced` with unclean election disabled; unfencing
//! gives leaderless partitions whose ISR holds the broker back their leader.
//! Producer-id blocks: `next_producer_id` in the image is the first id of the
//! next block; every allocation writes a `ProducerIds` record advancing it.

use super::*;

impl QuorumController {
    /// The leader's side of [`QuorumController::register_broker`].
    pub(super) async fn register_broker_local(&self, reg: BrokerRegistration) -> Result<(), ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        // Above every offset committed so far, and each registration is
        // applied before the next begins: unique and increasing per broker.
        let epoch = image.last_offset + 1;
        let id = reg.id;
        if let Some(existing) = image.broker(id) {
            if existing.incarnation_id != reg.incarnation_id && self.session_alive(id) {
                return Err(ControllerError::DuplicateBrokerRegistration(format!(
                    "Another broker is registered with that broker id, {id}, and its session has not expired"
                )));
            }
        }
        let mut records = vec![MetadataRecord::RegisterBroker {
            id,
            incarnation_id: reg.incarnation_id,
            listeners: reg.listeners,
            rack: reg.rack,
            fenced: true,
            epoch,
        }];
        if !reg.fenced {
            records.extend(unfence_records(&image, id, epoch));
        }
        self.commit(&guard, records).await?;
        if reg.fenced {
            tracing::info!(broker = id, epoch, "broker registered, fenced until it has caught up");
        } else {
            tracing::info!(broker = id, epoch, "broker registered and unfenced");
        }
        Ok(())
    }

    /// Unfences a registered broker (its heartbeat showed it caught up).
    pub(super) async fn unfence_broker_local(&self, broker_id: i32, epoch: i64) -> Result<(), ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        match image.broker(broker_id) {
            Some(b) if b.epoch == epoch && b.fenced => {}
            Some(b) if b.epoch == epoch => return Ok(()),
            _ => {
                return Err(ControllerError::StaleBrokerEpoch(format!(
                    "Broker {broker_id} is not registered with epoch {epoch}"
                )))
            }
        }
        self.commit(&guard, unfence_records(&image, broker_id, epoch)).await?;
        tracing::info!(broker = broker_id, epoch, "broker unfenced");
        Ok(())
    }

    /// The leader's side of [`QuorumController::fence_broker`].
    /// `reason` goes into the log line.
    pub(super) async fn fence_broker_local(&self, broker_id: i32, reason: &str) -> Result<(), ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        let broker = image.broker(broker_id).ok_or_else(|| {
            ControllerError::StaleBrokerEpoch(format!("No broker registration found for broker {broker_id}"))
        })?;
        if broker.fenced {
            return Ok(());
        }
        let acceptable = |r: i32| r != broker_id && image.broker(r).is_some_and(|b| !b.fenced);
        let mut records = Vec::new();
        for topic in image.topics.values() {
            for (p, part) in topic.partitions.iter().enumerate() {
                if part.leader != broker_id && !part.isr.contains(&broker_id) {
                    continue;
                }
                let mut isr: Vec<i32> = part.isr.iter().copied().filter(|&r| r != broker_id).collect();
                if isr.is_empty() {
                    isr = part.isr.clone();
                }
                let leader = if isr.contains(&part.leader) && part.leader != broker_id {
                    part.leader
                } else {
                    part.replicas.iter().copied().find(|&r| acceptable(r) && isr.contains(&r)).unwrap_or(-1)
                };
                let leader_change = (leader != part.leader).then_some(leader);
                let isr_change = (isr != part.isr).then_some(isr);
                if leader_change.is_some() || isr_change.is_some() {
                    records.push(MetadataRecord::PartitionChange {
                        topic_id: topic.id,
                        partition_id: p as i32,
                        leader: leader_change,
                        isr: isr_change,
                        replicas: None,
                    });
                }
            }
        }
        records.push(MetadataRecord::FenceBroker { id: broker_id, epoch: broker.epoch });
        self.commit(&guard, records).await?;
        tracing::info!(broker = broker_id, reason, "broker fenced");
        Ok(())
    }

    /// The leader's side of [`QuorumController::allocate_producer_ids`].
    pub(super) async fn allocate_producer_ids_local(&self, broker_id: i32) -> Result<(i64, i64), ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        let broker = image.broker(broker_id).ok_or_else(|| {
            ControllerError::StaleBrokerEpoch(format!("No broker registration found for broker {broker_id}"))
        })?;
        let first = image.next_producer_id;
        let size = self.config.producer_id_block_size;
        let next = first
            .checked_add(size)
            .ok_or_else(|| ControllerError::Internal("Exhausted all producerIds.".to_string()))?;
        self.commit(
            &guard,
            vec![MetadataRecord::ProducerIds { broker_id, broker_epoch: broker.epoch, next_producer_id: next }],
        )
        .await?;
        Ok((first, size))
    }
}

/// Unfencing a broker: the record, and leadership back for every leaderless
/// partition whose ISR holds it.
fn unfence_records(image: &MetadataImage, id: i32, epoch: i64) -> Vec<MetadataRecord> {
    let mut records = vec![MetadataRecord::UnfenceBroker { id, epoch }];
    for topic in image.topics.values() {
        for (p, part) in topic.partitions.iter().enumerate() {
            if part.leader == -1 && part.isr.contains(&id) {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition_id: p as i32,
                    leader: Some(id),
                    isr: None,
                    replicas: None,
                });
            }
        }
    }
    records
}
