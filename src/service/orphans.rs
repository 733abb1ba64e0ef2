//! The orphan collector: removes audio objects that no committed message or greeting references.
//!
//! Audio is written before the row that points at it commits (see "Deposit order" in
//! docs/design/0002-write-path-and-group-commit.md; the collector is 0005-orphan-collector.md
//! there), so a crash, a killed node or a lost database connection in between leaves an object
//! nobody will ever read. So do failed removals (`remove_blobs` only logs) and renditions of
//! formats no longer made. The collector lists the store, and removes an object when it is older
//! than `audio.orphan_grace_secs` and the row its key names (message id or greeting mailbox, both
//! part of the key) does not reference it (for a rendition: does not reference its original).
//!
//! Safety: the database is asked after the listing, so a row committed before the check protects
//! its object; an object younger than the grace period is never removed, which covers every write
//! still waiting for its transaction. Keys not of our shape are left alone. On a cluster, one node
//! per `orphan_sweep_secs` takes the turn (a conditional UPDATE in SQL); removals are idempotent
//! anyway, so two overlapping passes would only waste requests.

use std::time::Duration;

use futures_util::StreamExt;
use tracing::Instrument as _;

use super::{Result, Voicemail};
use crate::blob::{BlobKey, BlobMeta};

/// Objects checked against the database per query.
const BATCH: usize = 500;
/// The cluster-wide turn's name (a row of `consumer_cursors`).
const TURN: &str = "audio-orphan-collector";

/// What one pass of the collector did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrphanSweep {
    /// Objects listed.
    pub listed: u64,
    /// Objects old enough to be judged.
    pub checked: u64,
    /// Objects removed (or that would be, on a dry run).
    pub removed: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Removals that failed (left for the next pass).
    pub failed: u64,
    /// Stale scratch files of this node removed.
    pub scratch_removed: u64,
}

impl Voicemail {
    /// One pass of the orphan collector as if the time were `now_ms` (Unix milliseconds): every
    /// unreferenced object last written before `now_ms - orphan_grace_secs` is removed (only
    /// counted when `dry_run`). Also removes this node's scratch files older than the grace
    /// period (left by a crash mid-rendition or mid-upload).
    pub async fn collect_orphans(&self, now_ms: i64, dry_run: bool) -> Result<OrphanSweep> {
        let grace_ms = (self.config.audio.orphan_grace_secs as i64).saturating_mul(1000);
        let cutoff = now_ms.saturating_sub(grace_ms);
        let mut sweep = OrphanSweep::default();
        let mut listing = self.blobs.list("");
        let mut batch: Vec<BlobMeta> = Vec::with_capacity(BATCH);
        // Renditions of IMAP messages are judged by asking the IMAP servers, per mailbox.
        let mut imap_renditions = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item?;
            sweep.listed += 1;
            if meta.modified_ms > cutoff {
                continue;
            }
            if meta
                .key
                .as_str()
                .starts_with(super::rendition::IMAP_RENDITIONS)
            {
                imap_renditions.push(meta);
                continue;
            }
            if !ours(&meta.key) {
                continue;
            }
            batch.push(meta);
            if batch.len() == BATCH {
                self.judge(&mut batch, dry_run, &mut sweep).await?;
            }
        }
        self.judge(&mut batch, dry_run, &mut sweep).await?;
        self.judge_imap_renditions(imap_renditions, dry_run, &mut sweep)
            .await?;
        if !dry_run {
            sweep.scratch_removed = self.clean_scratch(cutoff).await;
        }
        Ok(sweep)
    }

    /// Removes the objects of `batch` whose original no row references, then empties `batch`.
    async fn judge(
        &self,
        batch: &mut Vec<BlobMeta>,
        dry_run: bool,
        sweep: &mut OrphanSweep,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        sweep.checked += batch.len() as u64;
        let originals: Vec<String> = batch
            .iter()
            .map(|m| m.key.original().as_str().to_owned())
            .collect();
        let referenced = self.sql.referenced_audio_keys(&originals).await?;
        for (meta, original) in batch.drain(..).zip(originals) {
            if referenced.contains(&original) {
                continue;
            }
            if dry_run {
                sweep.removed += 1;
                sweep.removed_bytes += meta.size;
                continue;
            }
            match self.blobs.remove(&meta.key).await {
                Ok(()) => {
                    tracing::info!(audio.key = %meta.key.as_str(), bytes = meta.size, "removed orphaned audio");
                    sweep.removed += 1;
                    sweep.removed_bytes += meta.size;
                }
                Err(e) => {
                    tracing::warn!(audio.key = %meta.key.as_str(), error = %e, "could not remove orphaned audio");
                    sweep.failed += 1;
                }
            }
        }
        Ok(())
    }

    /// Removes regular files in this node's scratch directory last modified before `cutoff_ms`.
    async fn clean_scratch(&self, cutoff_ms: i64) -> u64 {
        let dir = self.config.scratch_dir();
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            return 0;
        };
        let mut removed = 0;
        while let Ok(Some(e)) = entries.next_entry().await {
            let Ok(meta) = e.metadata().await else {
                continue;
            };
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(i64::MAX, |d| d.as_millis() as i64);
            if meta.is_file()
                && modified_ms < cutoff_ms
                && tokio::fs::remove_file(e.path()).await.is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    /// Runs the collector every `audio.orphan_sweep_secs` (when this node gets the cluster's
    /// turn) until `shutdown`; does nothing when `audio.orphan_grace_secs` is 0.
    pub fn start_orphan_collector(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) {
        let audio = &self.config.audio;
        if audio.orphan_grace_secs == 0 {
            tracing::info!("orphan collector off (audio.orphan_grace_secs = 0)");
            return;
        }
        let every = Duration::from_secs(audio.orphan_sweep_secs.max(1));
        let vm = self.clone();
        let turns = async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => vm.orphan_turn(every).await,
                }
            }
        };
        tracker.spawn(turns.instrument(tracing::info_span!("orphan_collector")));
    }

    async fn orphan_turn(&self, every: Duration) {
        let now = crate::domain::now_ms();
        // A little less than the interval, so the node whose tick comes first each round wins.
        let interval_ms = (every.as_millis() as i64) * 9 / 10;
        match self.sql.take_turn(TURN, now, interval_ms).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "orphan collector: could not take the turn");
                return;
            }
        }
        match self.collect_orphans(now, false).await {
            Ok(s) if s.removed > 0 || s.failed > 0 || s.scratch_removed > 0 => tracing::info!(
                listed = s.listed,
                removed = s.removed,
                bytes = s.removed_bytes,
                failed = s.failed,
                scratch = s.scratch_removed,
                "orphan collector pass"
            ),
            Ok(s) => tracing::debug!(
                listed = s.listed,
                "orphan collector pass: nothing to remove"
            ),
            Err(e) => tracing::warn!(error = %e, "orphan collector pass failed"),
        }
    }
}

/// Only keys of the shapes this service writes are ever judged.
fn ours(key: &BlobKey) -> bool {
    let k = key.as_str();
    k.starts_with("messages/") || k.starts_with("greetings/")
}
