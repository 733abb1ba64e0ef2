//! MWI push targets: where a context's message-waiting counts are pushed (Asterisk ARI, AMI, SIP).

use std::time::{Duration, Instant};

use super::{Result, ServiceError, Voicemail};
use crate::domain::Principal;
use crate::events::sip::SipUri;
use crate::store::{MwiPushRecord, MwiTargetKind, MwiTargetRecord, StoreError};

/// Settings of a target (`None` = unchanged on update).
#[derive(Debug, Default, Clone)]
pub struct MwiTargetSettings {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub username: Option<String>,
    pub secret: Option<String>,
    pub mailbox: Option<String>,
    pub active: Option<bool>,
}

fn check_target(kind: MwiTargetKind, url: &str) -> Result<()> {
    let bad = |m: String| Err(ServiceError::Invalid(m));
    match kind {
        MwiTargetKind::Ari => match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
            _ => bad("an ari target's url is the Asterisk HTTP base, e.g. http://pbx1:8088".into()),
        },
        MwiTargetKind::Ami => {
            let ok = url.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && p.parse::<u16>().is_ok() && !url.contains('/')
            });
            if ok {
                Ok(())
            } else {
                bad("an ami target's url is host:port, e.g. pbx1:5038".into())
            }
        }
        MwiTargetKind::Sip => SipUri::parse(url)
            .map(|_| ())
            .map_err(ServiceError::Invalid),
    }
}

fn check_text(name: &str, v: &str, max: usize) -> Result<()> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "{name} must be at most {max} characters, without control characters"
        )));
    }
    Ok(())
}

fn parse_kind(k: &str) -> Result<MwiTargetKind> {
    MwiTargetKind::parse(k)
        .ok_or_else(|| ServiceError::Invalid(format!("kind must be ari, ami or sip, not {k:?}")))
}

impl Voicemail {
    async fn visible_target(&self, p: &Principal, id: &str) -> Result<MwiTargetRecord> {
        Self::require_admin(p, "managing MWI targets")?;
        let not_found = || ServiceError::NotFound(format!("MWI target {id}"));
        let t = self.sql.get_mwi_target(id).await.map_err(|e| match e {
            StoreError::NotFound => not_found(),
            other => other.into(),
        })?;
        if !p.sees_context(&t.context) {
            return Err(not_found());
        }
        Ok(t)
    }

    /// Creates a target for a context (admin); the current counts of its mailboxes are pushed.
    pub async fn create_mwi_target(
        &self,
        p: &Principal,
        context: &str,
        s: MwiTargetSettings,
    ) -> Result<MwiTargetRecord> {
        self.admin_context(p, context, "managing MWI targets")
            .await?;
        let kind = parse_kind(&s.kind.unwrap_or_default())?;
        let url = s
            .url
            .ok_or_else(|| ServiceError::Invalid("url is required".into()))?;
        check_target(kind, &url)?;
        let t = MwiTargetRecord {
            id: uuid::Uuid::now_v7().to_string(),
            context: context.to_owned(),
            kind,
            url,
            username: s.username.unwrap_or_default(),
            secret: s.secret.unwrap_or_default(),
            mailbox: s.mailbox.unwrap_or_default(),
            active: s.active.unwrap_or(true),
            created_at: 0,
            updated_at: 0,
        };
        check_text("username", &t.username, 255)?;
        check_text("secret", &t.secret, 255)?;
        check_text("mailbox", &t.mailbox, 30)?;
        let created = self.sql.create_mwi_target(&t).await?;
        self.sql.resync_mwi(None, Some(&created.id)).await?;
        self.notify_changed();
        Ok(created)
    }

    /// Targets the caller may see (admin).
    pub async fn list_mwi_targets(
        &self,
        p: &Principal,
        context: Option<&str>,
    ) -> Result<Vec<MwiTargetRecord>> {
        Self::require_admin(p, "managing MWI targets")?;
        match Self::listing_scope(p, context) {
            Ok(context) => Ok(self.sql.list_mwi_targets(context).await?),
            Err(()) => Ok(vec![]),
        }
    }

    /// One target (admin).
    pub async fn get_mwi_target(&self, p: &Principal, id: &str) -> Result<MwiTargetRecord> {
        self.visible_target(p, id).await
    }

    /// Changes a target (admin); current counts are pushed to it again.
    pub async fn update_mwi_target(
        &self,
        p: &Principal,
        id: &str,
        s: MwiTargetSettings,
    ) -> Result<MwiTargetRecord> {
        let mut t = self.visible_target(p, id).await?;
        if let Some(k) = s.kind {
            t.kind = parse_kind(&k)?;
        }
        if let Some(u) = s.url {
            t.url = u;
        }
        check_target(t.kind, &t.url)?;
        if let Some(u) = s.username {
            check_text("username", &u, 255)?;
            t.username = u;
        }
        if let Some(v) = s.secret {
            check_text("secret", &v, 255)?;
            t.secret = v;
        }
        if let Some(m) = s.mailbox {
            check_text("mailbox", &m, 30)?;
            t.mailbox = m;
        }
        if let Some(a) = s.active {
            t.active = a;
        }
        let updated = self.sql.update_mwi_target(&t).await?;
        self.notify_changed();
        Ok(updated)
    }

    /// Deletes a target (admin).
    pub async fn delete_mwi_target(&self, p: &Principal, id: &str) -> Result<()> {
        self.visible_target(p, id).await?;
        Ok(self.sql.delete_mwi_target(id).await?)
    }

    /// Push state of a target per mailbox (admin).
    pub async fn mwi_target_pushes(&self, p: &Principal, id: &str) -> Result<Vec<MwiPushRecord>> {
        self.visible_target(p, id).await?;
        Ok(self.sql.list_mwi_pushes(id).await?)
    }

    /// Queues the current counts of every mailbox (of a context) for every target (admin).
    pub async fn resync_mwi(&self, p: &Principal, context: Option<&str>) -> Result<u64> {
        Self::require_admin(p, "resyncing MWI")?;
        let context = Self::listing_scope(p, context)
            .map_err(|()| ServiceError::NotFound(format!("context {}", context.unwrap_or(""))))?;
        let n = self.sql.resync_mwi(context, None).await?;
        self.notify_changed();
        Ok(n)
    }

    /// Sends the current counts of every mailbox of a target's context (or of its one mailbox) to
    /// that target now (admin): its push state is reset and every mailbox queued, as a resync does
    /// for one target. Waits up to `wait` until each queued push was tried once and returns how
    /// many were queued and the push states as they then stand. A disabled target gets nothing.
    pub async fn test_mwi_target(
        &self,
        p: &Principal,
        id: &str,
        wait: Duration,
    ) -> Result<(u64, Vec<MwiPushRecord>)> {
        let t = self.visible_target(p, id).await?;
        if !t.active {
            return Err(ServiceError::Invalid(
                "this target is disabled: enable it first".into(),
            ));
        }
        let queued = self.sql.resync_mwi(None, Some(&t.id)).await?;
        self.notify_changed();
        let started = Instant::now();
        loop {
            let pushes = self.sql.list_mwi_pushes(&t.id).await?;
            let settled = pushes
                .iter()
                .all(|r| r.pushed_version >= r.wanted_version || r.attempts > 0);
            if settled || started.elapsed() >= wait {
                return Ok((queued, pushes));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
