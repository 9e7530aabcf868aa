//! Broker lifecycle (registration, fencing, unfencing) and producer-id blocks;
//! `sessions.rs` decides when a broker is fenced or unfenced.
//!
//! Broker epoch = one past the image's last offset when the registration is
//! committed: at most the registration entry's own log offset, above every
//! earlier epoch. Fencing follows KRaft's `handleBrokerFenced`: the broker
//! leaves every ISR (the last member stays) and its leaderships go to another
//! valid replica, or to a live one outside the ISR where the topic allows
//! unclean election (`election.rs`); unfencing elects a leader for the
//! leaderless partitions the broker is a replica of.
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
        // A new incarnation of a registered broker: whatever the previous one
        // did not hand over (it was killed, or fenced while it still led a
        // partition with no other live replica) it gives up now, as Kafka's
        // controller cleans up after an unclean shutdown. It may have lost
        // what it had not flushed, so it leads again only in a new leader
        // epoch, which makes its followers check their logs against it.
        let mut records = match image.broker(id) {
            Some(existing) if existing.incarnation_id != reg.incarnation_id => {
                self.leave_isrs_and_leaderships(&image, id)
            }
            _ => Vec::new(),
        };
        let cleaned_up = records.len();
        records.push(MetadataRecord::RegisterBroker {
            id,
            incarnation_id: reg.incarnation_id,
            listeners: reg.listeners,
            rack: reg.rack,
            fenced: true,
            epoch,
        });
        if !reg.fenced {
            let mut registered = ImageBuilder::from_image((*image).clone());
            for record in &records {
                registered.replay(record)?;
            }
            records.extend(self.unfence_records(&registered.build(), id, epoch));
        }
        self.commit(&guard, records).await?;
        if cleaned_up > 0 {
            tracing::info!(
                broker = id,
                partitions = cleaned_up,
                "a new incarnation of the broker registered: the previous one left its ISRs and leaderships"
            );
        }
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
        self.commit(&guard, self.unfence_records(&image, broker_id, epoch)).await?;
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
        let mut records = self.leave_isrs_and_leaderships(&image, broker_id);
        records.push(MetadataRecord::FenceBroker { id: broker_id, epoch: broker.epoch });
        self.commit(&guard, records).await?;
        tracing::info!(broker = broker_id, reason, "broker fenced");
        Ok(())
    }

    /// The partition changes taking `broker_id` out of every ISR (the last
    /// member stays) and its leaderships to another valid replica, or to a
    /// live one outside the ISR where the topic allows unclean election.
    fn leave_isrs_and_leaderships(&self, image: &MetadataImage, broker_id: i32) -> Vec<MetadataRecord> {
        let live = |r: i32| r != broker_id && election::is_live(image, r);
        let mut records = Vec::new();
        for topic in image.topics.values() {
            let election =
                if self.unclean_election_enabled(image, &topic.name) { Election::Unclean } else { Election::Clean };
            for (p, part) in topic.partitions.iter().enumerate() {
                if part.leader != broker_id && !part.isr.contains(&broker_id) {
                    continue;
                }
                let mut isr: Vec<i32> = part.isr.iter().copied().filter(|&r| r != broker_id).collect();
                if isr.is_empty() {
                    // As KRaft without ELR: the last member stays, so it can lead again.
                    isr = part.isr.clone();
                }
                if let Some(change) = election::elect(part, isr, election, live) {
                    records.push(election::partition_change(topic.id, p as i32, change));
                }
            }
        }
        records
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

    /// Unfencing a broker: the record, and an election for every leaderless
    /// partition it is a replica of (clean: it leads if in the ISR; unclean
    /// where the topic allows it: it may lead from outside the ISR).
    fn unfence_records(&self, image: &MetadataImage, id: i32, epoch: i64) -> Vec<MetadataRecord> {
        let mut records = vec![MetadataRecord::UnfenceBroker { id, epoch }];
        let live = |r: i32| r == id || election::is_live(image, r);
        for topic in image.topics.values() {
            let election =
                if self.unclean_election_enabled(image, &topic.name) { Election::Unclean } else { Election::Clean };
            for (p, part) in topic.partitions.iter().enumerate() {
                if part.leader != -1 || !part.replicas.contains(&id) {
                    continue;
                }
                if let Some(change) = election::elect(part, part.isr.clone(), election, live) {
                    records.push(election::partition_change(topic.id, p as i32, change));
                }
            }
        }
        records
    }
}
