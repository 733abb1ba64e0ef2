//! What the admin web UI needs beyond `admin.rs`: a mailbox's messages with per-folder counts,
//! audited message, greeting and API key changes, and the peaks of a recording for a waveform.
//! Each goes through the same services as the API, with a principal limited to what the admin
//! may see; every change is written to the audit log.

use bytes::Bytes;
use futures_util::Stream;

use super::admin::{Admin, Client};
use super::rendition::StoredReader;
use super::{
    ForwardRequest, MwiTargetSettings, NewApiKey, Result, ServiceError, Voicemail, WebhookSettings,
};
use crate::audio::decode::MAX_DECODE_SECS;
use crate::audio::{AudioError, Decoder, RawHint};
use crate::blob::BlobKey;
use crate::domain::{ApiKeyId, Folder, GreetingKind, MailboxAddress, MessageId, Principal, Role};
use crate::store::{
    ApiKeyRecord, DeliveryRecord, GreetingRecord, MailboxRecord, MessageRecord, MwiPushRecord,
    MwiTargetRecord, WebhookRecord,
};

/// The folders every mailbox shows, in Asterisk's order.
pub const UI_FOLDERS: [Folder; 7] = [
    Folder::Inbox,
    Folder::Old,
    Folder::Urgent,
    Folder::Work,
    Folder::Family,
    Folder::Friends,
    Folder::Deleted,
];

/// Messages of one folder of a mailbox, with the counts of every folder.
#[derive(Debug, Clone)]
pub struct FolderListing {
    pub mailbox: MailboxRecord,
    /// `(folder, messages, unread)` of the standard folders and any custom one in use.
    pub folders: Vec<(Folder, u32, u32)>,
    /// The shown folder's messages, newest first.
    pub messages: Vec<MessageRecord>,
}

/// The principal of `admin` acting on one of its contexts (as `Admin::principal` builds it).
fn principal(admin: &Admin, context: &str) -> Result<Principal> {
    if !admin.sees(context) {
        return Err(ServiceError::NotFound(format!("context {context}")));
    }
    Ok(Principal {
        key_id: admin.id.parse().unwrap_or_else(|_| ApiKeyId::nil()),
        role: Role::Admin,
        context: (!admin.contexts.is_empty()).then(|| context.to_owned()),
    })
}

/// Unlimited admins only (API keys span contexts).
fn unlimited(admin: &Admin) -> Result<()> {
    if admin.contexts.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "an admin limited to some contexts cannot manage API keys".into(),
        ))
    }
}

/// Most messages the folder listing reads from one folder (or one IMAP mailbox).
const LIST_CAP: usize = 10_000;

impl Voicemail {
    /// A folder of a mailbox the admin may see, and the counts of every folder.
    pub async fn admin_folder(
        &self,
        admin: &Admin,
        address: &MailboxAddress,
        folder: &Folder,
    ) -> Result<FolderListing> {
        let p = principal(admin, &address.context)?;
        let mailbox = self.get_mailbox(&p, address).await?;
        if self.is_imap(&mailbox) {
            return self.imap_folder(&p, mailbox, folder).await;
        }
        let folders = self.folder_counts_of(&mailbox).await?;
        let mut messages = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .list_messages(&p, address, Some(folder), after, 1000)
                .await?;
            after = page.items.last().map(|m| m.id);
            messages.extend(page.items);
            if !page.has_more || after.is_none() || messages.len() >= LIST_CAP {
                break;
            }
        }
        messages.sort_by(|a, b| b.origtime.cmp(&a.origtime).then(b.msgnum.cmp(&a.msgnum)));
        Ok(FolderListing {
            mailbox,
            folders,
            messages,
        })
    }

    /// `(folder, messages, unread)` of the standard folders and any custom one in use, from the
    /// counts query (the `messages_mailbox_folder_counts` index), not from the messages.
    async fn folder_counts_of(&self, mailbox: &MailboxRecord) -> Result<Vec<(Folder, u32, u32)>> {
        let mut folders: Vec<(Folder, u32, u32)> =
            UI_FOLDERS.iter().map(|f| (f.clone(), 0, 0)).collect();
        let n = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        for (name, total, unread) in self.sql.folder_counts(mailbox.id).await? {
            let Ok(f) = Folder::parse(&name) else {
                continue;
            };
            match folders.iter_mut().find(|(g, _, _)| *g == f) {
                Some(slot) => (slot.1, slot.2) = (n(total), n(unread)),
                None => folders.push((f, n(total), n(unread))),
            }
        }
        Ok(folders)
    }

    /// The folder counts of a mailbox the admin may see (for the live folder tabs).
    pub async fn admin_folder_counts(
        &self,
        admin: &Admin,
        address: &MailboxAddress,
    ) -> Result<Vec<(Folder, u32, u32)>> {
        let p = principal(admin, &address.context)?;
        let mailbox = self.get_mailbox(&p, address).await?;
        if self.is_imap(&mailbox) {
            return Ok(self.imap_folder(&p, mailbox, &Folder::Inbox).await?.folders);
        }
        self.folder_counts_of(&mailbox).await
    }

    /// A folder of a mailbox whose messages live in IMAP: the messages are read (at most
    /// `LIST_CAP`) and counted per folder, as the SQL counts query is not there.
    async fn imap_folder(
        &self,
        p: &Principal,
        mailbox: MailboxRecord,
        folder: &Folder,
    ) -> Result<FolderListing> {
        let address = mailbox.address.clone();
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_messages(p, &address, None, after, 1000).await?;
            after = page.items.last().map(|m| m.id);
            all.extend(page.items);
            if !page.has_more || after.is_none() || all.len() >= LIST_CAP {
                break;
            }
        }
        let mut folders: Vec<(Folder, u32, u32)> =
            UI_FOLDERS.iter().map(|f| (f.clone(), 0, 0)).collect();
        for m in &all {
            let slot = match folders.iter().position(|(f, _, _)| *f == m.folder) {
                Some(i) => i,
                None => {
                    folders.push((m.folder.clone(), 0, 0));
                    folders.len() - 1
                }
            };
            if let Some(s) = folders.get_mut(slot) {
                s.1 += 1;
                s.2 += u32::from(!m.read);
            }
        }
        let mut messages: Vec<MessageRecord> =
            all.into_iter().filter(|m| m.folder == *folder).collect();
        messages.sort_by(|a, b| b.origtime.cmp(&a.origtime).then(b.msgnum.cmp(&a.msgnum)));
        Ok(FolderListing {
            mailbox,
            folders,
            messages,
        })
    }

    /// One message of a mailbox the admin may see, with the mailbox.
    pub async fn admin_message(
        &self,
        admin: &Admin,
        address: &MailboxAddress,
        id: MessageId,
    ) -> Result<(MailboxRecord, MessageRecord)> {
        let p = principal(admin, &address.context)?;
        let mailbox = self.get_mailbox(&p, address).await?;
        let m = self.get_message(&p, address, id).await?;
        Ok((mailbox, m))
    }

    /// Moves a message and/or marks it read or unread.
    pub async fn admin_change_message(
        &self,
        admin: &Admin,
        client: &Client,
        address: &MailboxAddress,
        id: MessageId,
        folder: Option<Folder>,
        read: Option<bool>,
    ) -> Result<MessageRecord> {
        let p = principal(admin, &address.context)?;
        let m = self
            .update_message(&p, address, id, folder.clone(), read)
            .await?;
        let (action, detail) = match (folder, read) {
            (Some(f), _) => ("message.move", format!("to {f}")),
            (None, Some(true)) => ("message.read", String::new()),
            _ => ("message.unread", String::new()),
        };
        self.audit(admin, client, action, &format!("{address}/{id}"), &detail)
            .await?;
        Ok(m)
    }

    /// Deletes a message.
    pub async fn admin_delete_message(
        &self,
        admin: &Admin,
        client: &Client,
        address: &MailboxAddress,
        id: MessageId,
    ) -> Result<()> {
        let p = principal(admin, &address.context)?;
        self.delete_message(&p, address, id).await?;
        self.audit(
            admin,
            client,
            "message.delete",
            &format!("{address}/{id}"),
            "",
        )
        .await
    }

    /// Copies a message into another mailbox the admin may see.
    pub async fn admin_forward_message(
        &self,
        admin: &Admin,
        client: &Client,
        address: &MailboxAddress,
        id: MessageId,
        to: MailboxAddress,
    ) -> Result<()> {
        let p = principal(admin, &address.context)?;
        principal(admin, &to.context)?;
        let detail = format!("to {to}");
        self.forward_message(
            &p,
            address,
            id,
            ForwardRequest {
                to: vec![to],
                keep: true,
            },
        )
        .await?;
        self.audit(
            admin,
            client,
            "message.forward",
            &format!("{address}/{id}"),
            &detail,
        )
        .await
    }

    /// Peak amplitudes (0–1) of a message's audio in about `buckets` equal slices, for a
    /// waveform. Decoded on the blocking pool under a transcode permit.
    pub async fn admin_waveform(
        &self,
        admin: &Admin,
        address: &MailboxAddress,
        id: MessageId,
        buckets: usize,
    ) -> Result<Vec<f32>> {
        let (_, m) = self.admin_message(admin, address, id).await?;
        let key = BlobKey::from_stored(&m.audio_key)
            .ok_or_else(|| ServiceError::Unavailable("the stored audio key is malformed".into()))?;
        let read = self.blobs.open(&key, None).await?;
        let slot = self.transcoders.slot().await?;
        let expected = u64::try_from(m.duration_ms.max(1)).unwrap_or(1)
            * u64::from(m.sample_rate.max(1))
            / 1000;
        let format = m.audio_format;
        let buckets = buckets.clamp(16, 2000);
        let mut src = StoredReader::new(read.stream, tokio::runtime::Handle::current());
        slot.run(move || {
            let decoder = Decoder::new(format, &mut src)
                .map(|d| d.with_max_secs(MAX_DECODE_SECS))
                .and_then(|d| peaks(d, expected, buckets));
            match (decoder, src.storage_error()) {
                (Ok(p), _) => Ok(p),
                (Err(_), Some(io)) => Err(ServiceError::Unavailable(format!(
                    "the audio store failed: {io}"
                ))),
                (Err(e), None) => Err(e.into()),
            }
        })?
        .await
        .map_err(|_| ServiceError::Unavailable("the waveform transcoder failed".into()))?
    }

    /// The four greetings of a mailbox the admin may see (absent ones are `None`).
    pub async fn admin_greetings(
        &self,
        admin: &Admin,
        address: &MailboxAddress,
    ) -> Result<(MailboxRecord, Vec<(GreetingKind, Option<GreetingRecord>)>)> {
        let p = principal(admin, &address.context)?;
        let mailbox = self.get_mailbox(&p, address).await?;
        let mut out = Vec::new();
        for kind in GreetingKind::ALL {
            match self.get_greeting(&p, address, kind).await {
                Ok(g) => out.push((kind, Some(g))),
                Err(ServiceError::NotFound(_)) => out.push((kind, None)),
                Err(e) => return Err(e),
            }
        }
        Ok((mailbox, out))
    }

    /// One greeting of a mailbox the admin may see.
    pub async fn admin_greeting(
        &self,
        admin: &Admin,
        address: &MailboxAddress,
        kind: GreetingKind,
    ) -> Result<GreetingRecord> {
        let p = principal(admin, &address.context)?;
        self.get_greeting(&p, address, kind).await
    }

    /// Stores a greeting from an uploaded or recorded file (any supported audio).
    pub async fn admin_put_greeting<S, E>(
        &self,
        admin: &Admin,
        client: &Client,
        address: &MailboxAddress,
        kind: GreetingKind,
        hint: RawHint,
        body: S,
    ) -> Result<GreetingRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let p = principal(admin, &address.context)?;
        let (g, _) = self.put_greeting(&p, address, kind, hint, body).await?;
        let detail = format!("{} ms, {}", g.duration_ms, g.audio_format.as_str());
        self.audit(
            admin,
            client,
            "greeting.put",
            &format!("{address}/{}", kind.as_str()),
            &detail,
        )
        .await?;
        Ok(g)
    }

    /// Removes a greeting.
    pub async fn admin_delete_greeting(
        &self,
        admin: &Admin,
        client: &Client,
        address: &MailboxAddress,
        kind: GreetingKind,
    ) -> Result<()> {
        let p = principal(admin, &address.context)?;
        self.delete_greeting(&p, address, kind).await?;
        self.audit(
            admin,
            client,
            "greeting.delete",
            &format!("{address}/{}", kind.as_str()),
            "",
        )
        .await
    }

    /// Every API key (unlimited admins only).
    pub async fn admin_api_keys(&self, admin: &Admin) -> Result<Vec<ApiKeyRecord>> {
        unlimited(admin)?;
        self.list_api_keys().await
    }

    /// Creates an API key; the token is in the answer only.
    pub async fn admin_create_api_key(
        &self,
        admin: &Admin,
        client: &Client,
        name: &str,
        role: Role,
        context: Option<&str>,
    ) -> Result<NewApiKey> {
        unlimited(admin)?;
        let k = self.create_api_key(name, role, context).await?;
        let detail = format!(
            "{} {}, {}",
            k.record.token_prefix,
            role.as_str(),
            context.unwrap_or("all contexts")
        );
        self.audit(admin, client, "apikey.create", &k.record.name, &detail)
            .await?;
        Ok(k)
    }

    /// Revokes an API key by id.
    pub async fn admin_revoke_api_key(
        &self,
        admin: &Admin,
        client: &Client,
        id: &str,
    ) -> Result<ApiKeyRecord> {
        unlimited(admin)?;
        let k = self.revoke_api_key(id).await?;
        self.audit(admin, client, "apikey.revoke", &k.name, &k.token_prefix)
            .await?;
        Ok(k)
    }

    /// The webhooks of a context the admin may see.
    pub async fn admin_webhooks(&self, admin: &Admin, context: &str) -> Result<Vec<WebhookRecord>> {
        self.admin_visible_context(admin, context).await?;
        let p = principal(admin, context)?;
        self.list_webhooks(&p, Some(context)).await
    }

    /// One webhook of a context the admin may see, with its most recent deliveries.
    pub async fn admin_webhook(
        &self,
        admin: &Admin,
        context: &str,
        id: &str,
        deliveries: u32,
    ) -> Result<(WebhookRecord, Vec<DeliveryRecord>)> {
        let p = principal(admin, context)?;
        let w = self.get_webhook(&p, id).await?;
        if w.context != context {
            return Err(ServiceError::NotFound(format!("webhook {id}")));
        }
        let d = self
            .list_deliveries(&p, id, None, deliveries.clamp(1, 200))
            .await?;
        Ok((w, d))
    }

    /// Creates a webhook in a context the admin may see.
    pub async fn admin_create_webhook(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
        settings: WebhookSettings,
    ) -> Result<WebhookRecord> {
        self.admin_visible_context(admin, context).await?;
        let p = principal(admin, context)?;
        let w = self.create_webhook(&p, context, settings).await?;
        self.audit(
            admin,
            client,
            "webhook.create",
            &w.url,
            &describe_webhook(&w),
        )
        .await?;
        Ok(w)
    }

    /// Changes a webhook of a context the admin may see.
    pub async fn admin_update_webhook(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
        id: &str,
        settings: WebhookSettings,
    ) -> Result<WebhookRecord> {
        self.admin_webhook(admin, context, id, 1).await?;
        let p = principal(admin, context)?;
        let new_secret = settings.secret.is_some();
        let w = self.update_webhook(&p, id, settings).await?;
        let mut detail = describe_webhook(&w);
        if new_secret {
            detail.push_str(", new secret");
        }
        self.audit(admin, client, "webhook.update", &w.url, &detail)
            .await?;
        Ok(w)
    }

    /// Deletes a webhook of a context the admin may see, with its delivery history.
    pub async fn admin_delete_webhook(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
        id: &str,
    ) -> Result<()> {
        let (w, _) = self.admin_webhook(admin, context, id, 1).await?;
        let p = principal(admin, context)?;
        self.delete_webhook(&p, id).await?;
        self.audit(admin, client, "webhook.delete", &w.url, &w.context)
            .await
    }

    /// Sends a test delivery to a webhook now and returns it after its first attempt (or after
    /// the wait, still pending).
    pub async fn admin_test_webhook(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
        id: &str,
    ) -> Result<DeliveryRecord> {
        let (w, _) = self.admin_webhook(admin, context, id, 1).await?;
        let p = principal(admin, context)?;
        let wait =
            std::time::Duration::from_secs(self.config.webhooks.timeout_secs.clamp(1, 20) + 2);
        let d = self.send_test_webhook(&p, id, wait).await?;
        let detail = match (&d.status[..], d.last_status, &d.last_error) {
            ("delivered", Some(s), _) => format!("delivered, HTTP {s}"),
            (_, _, Some(e)) => format!("{}: {e}", d.status),
            (status, _, None) => status.to_owned(),
        };
        self.audit(admin, client, "webhook.test", &w.url, &detail)
            .await?;
        Ok(d)
    }

    /// The MWI push targets of a context the admin may see.
    pub async fn admin_mwi_targets(
        &self,
        admin: &Admin,
        context: &str,
    ) -> Result<Vec<MwiTargetRecord>> {
        self.admin_visible_context(admin, context).await?;
        let p = principal(admin, context)?;
        self.list_mwi_targets(&p, Some(context)).await
    }

    /// One MWI push target of a context the admin may see, with its push state per mailbox.
    pub async fn admin_mwi_target(
        &self,
        admin: &Admin,
        context: &str,
        id: &str,
    ) -> Result<(MwiTargetRecord, Vec<MwiPushRecord>)> {
        let p = principal(admin, context)?;
        let t = self.get_mwi_target(&p, id).await?;
        if t.context != context {
            return Err(ServiceError::NotFound(format!("MWI target {id}")));
        }
        let pushes = self.mwi_target_pushes(&p, id).await?;
        Ok((t, pushes))
    }

    /// Creates an MWI push target in a context the admin may see.
    pub async fn admin_create_mwi_target(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
        settings: MwiTargetSettings,
    ) -> Result<MwiTargetRecord> {
        self.admin_visible_context(admin, context).await?;
        let p = principal(admin, context)?;
        let t = self.create_mwi_target(&p, context, settings).await?;
        self.audit(
            admin,
            client,
            "mwi_target.create",
            &t.url,
            &describe_target(&t),
        )
        .await?;
        Ok(t)
    }

    /// Changes an MWI push target of a context the admin may see (its counts are pushed again).
    pub async fn admin_update_mwi_target(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
        id: &str,
        settings: MwiTargetSettings,
    ) -> Result<MwiTargetRecord> {
        self.admin_mwi_target(admin, context, id).await?;
        let p = principal(admin, context)?;
        let t = self.update_mwi_target(&p, id, settings).await?;
        self.audit(
            admin,
            client,
            "mwi_target.update",
            &t.url,
            &describe_target(&t),
        )
        .await?;
        Ok(t)
    }

    /// Deletes an MWI push target of a context the admin may see.
    pub async fn admin_delete_mwi_target(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
        id: &str,
    ) -> Result<()> {
        let (t, _) = self.admin_mwi_target(admin, context, id).await?;
        let p = principal(admin, context)?;
        self.delete_mwi_target(&p, id).await?;
        self.audit(
            admin,
            client,
            "mwi_target.delete",
            &t.url,
            &describe_target(&t),
        )
        .await
    }

    /// Pushes the current counts to one target now; returns the pushes queued and the push
    /// states after each was tried once (or after the wait).
    pub async fn admin_test_mwi_target(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
        id: &str,
    ) -> Result<(u64, Vec<MwiPushRecord>)> {
        let (t, _) = self.admin_mwi_target(admin, context, id).await?;
        let p = principal(admin, context)?;
        let wait = std::time::Duration::from_secs(self.config.mwi.timeout_secs.clamp(1, 20) + 2);
        let (queued, pushes) = self.test_mwi_target(&p, id, wait).await?;
        let pushed = pushes
            .iter()
            .filter(|r| r.pushed_version >= r.wanted_version)
            .count();
        let failed = pushes.iter().filter(|r| r.last_error.is_some()).count();
        let detail = format!("{queued} queued, {pushed} pushed, {failed} failing");
        self.audit(admin, client, "mwi_target.test", &t.url, &detail)
            .await?;
        Ok((queued, pushes))
    }

    /// Queues the current counts of every mailbox of a context for every target of it.
    pub async fn admin_resync_mwi(
        &self,
        admin: &Admin,
        client: &Client,
        context: &str,
    ) -> Result<u64> {
        self.admin_visible_context(admin, context).await?;
        let p = principal(admin, context)?;
        let n = self.resync_mwi(&p, Some(context)).await?;
        self.audit(admin, client, "mwi.resync", context, &format!("{n} queued"))
            .await?;
        Ok(n)
    }
}

/// A webhook's settings for the audit log (never the secret).
fn describe_webhook(w: &WebhookRecord) -> String {
    let types = if w.event_types.is_empty() {
        "all events".to_owned()
    } else {
        w.event_types.join(" ")
    };
    format!(
        "{}, {types}, {}",
        w.context,
        if w.active { "active" } else { "disabled" }
    )
}

/// A target's settings for the audit log (never the secret).
fn describe_target(t: &MwiTargetRecord) -> String {
    let mailbox = if t.mailbox.is_empty() {
        "every mailbox"
    } else {
        &t.mailbox
    };
    format!(
        "{} {}, {mailbox}, {}",
        t.kind.as_str(),
        t.context,
        if t.active { "active" } else { "disabled" }
    )
}

/// The peaks of a decoded recording of about `expected` samples, in about `buckets` slices.
fn peaks<'a>(
    mut d: Decoder<'a>,
    expected: u64,
    buckets: usize,
) -> std::result::Result<Vec<f32>, AudioError> {
    let per = (expected / buckets as u64).max(1);
    let mut out = Vec::with_capacity(buckets + 1);
    let (mut peak, mut n) = (0u16, 0u64);
    while let Some(chunk) = d.next_chunk()? {
        for s in chunk {
            peak = peak.max(s.unsigned_abs());
            n += 1;
            if n == per {
                out.push(f32::from(peak) / 32768.0);
                (peak, n) = (0, 0);
            }
        }
    }
    if n > 0 {
        out.push(f32::from(peak) / 32768.0);
    }
    if out.len() > buckets {
        let f = out.len().div_ceil(buckets);
        out = out
            .chunks(f)
            .map(|c| c.iter().copied().fold(0.0, f32::max))
            .collect();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_fit_the_buckets() {
        let wav = crate::audio::wav::pcm16_wav(&[1000i16; 8000], 8000, 1);
        let d = Decoder::open(RawHint::Sniff, std::io::Cursor::new(wav)).unwrap();
        let p = peaks(d, 8000, 100).unwrap();
        assert_eq!(p.len(), 100);
        assert!(p.iter().all(|v| (*v - 1000.0 / 32768.0).abs() < 1e-6));
    }
}
