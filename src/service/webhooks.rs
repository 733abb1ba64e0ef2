//! Webhooks: per-context HTTP receivers of events, signed with a per-webhook secret.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine;

use std::time::{Duration, Instant};

use super::{Result, ServiceError, Voicemail};
use crate::domain::{EVENT_TYPES, Principal, now_secs};
use crate::store::{DeliveryRecord, NewWebhook, StoreError, WebhookRecord};

/// Settings of a webhook (`None` = unchanged on update).
#[derive(Debug, Default, Clone)]
pub struct WebhookSettings {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `Some(None)` generates a new secret.
    pub secret: Option<Option<String>>,
    pub active: Option<bool>,
}

/// The `X-Voxmail-Event` type of a test delivery (not an outbox event type).
pub const TEST_EVENT_TYPE: &str = "webhook.test";

fn check_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ServiceError::Invalid(format!("url is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(ServiceError::Invalid(
            "url must be an http:// or https:// URL".into(),
        ));
    }
    if url.len() > 2048 {
        return Err(ServiceError::Invalid(
            "url must be at most 2048 characters".into(),
        ));
    }
    Ok(())
}

fn check_types(types: &[String]) -> Result<()> {
    for t in types {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(ServiceError::Invalid(format!(
                "unknown event type {t:?}: use {}",
                EVENT_TYPES.join(", ")
            )));
        }
    }
    Ok(())
}

fn secret_or_new(secret: Option<String>) -> Result<String> {
    match secret {
        Some(s) if s.len() < 16 || s.len() > 255 || s.chars().any(char::is_control) => Err(
            ServiceError::Invalid("secret must be 16-255 characters".into()),
        ),
        Some(s) => Ok(s),
        None => {
            let mut b = [0u8; 32];
            OsRng.fill_bytes(&mut b);
            Ok(format!(
                "whsec_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
            ))
        }
    }
}

impl Voicemail {
    async fn visible_webhook(&self, p: &Principal, id: &str) -> Result<WebhookRecord> {
        Self::require_admin(p, "managing webhooks")?;
        let not_found = || ServiceError::NotFound(format!("webhook {id}"));
        let w = self.sql.get_webhook(id).await.map_err(|e| match e {
            StoreError::NotFound => not_found(),
            other => other.into(),
        })?;
        if !p.sees_context(&w.context) {
            return Err(not_found());
        }
        Ok(w)
    }

    /// Creates a webhook for a context (admin).
    pub async fn create_webhook(
        &self,
        p: &Principal,
        context: &str,
        s: WebhookSettings,
    ) -> Result<WebhookRecord> {
        self.admin_context(p, context, "managing webhooks").await?;
        let url = s
            .url
            .ok_or_else(|| ServiceError::Invalid("url is required".into()))?;
        check_url(&url)?;
        let event_types = s.event_types.unwrap_or_default();
        check_types(&event_types)?;
        Ok(self
            .sql
            .create_webhook(NewWebhook {
                id: uuid::Uuid::now_v7().to_string(),
                context: context.to_owned(),
                url,
                event_types,
                secret: secret_or_new(s.secret.flatten())?,
                active: s.active.unwrap_or(true),
            })
            .await?)
    }

    /// Webhooks the caller may see (admin).
    pub async fn list_webhooks(
        &self,
        p: &Principal,
        context: Option<&str>,
    ) -> Result<Vec<WebhookRecord>> {
        Self::require_admin(p, "managing webhooks")?;
        match Self::listing_scope(p, context) {
            Ok(context) => Ok(self.sql.list_webhooks(context).await?),
            Err(()) => Ok(vec![]),
        }
    }

    /// One webhook (admin).
    pub async fn get_webhook(&self, p: &Principal, id: &str) -> Result<WebhookRecord> {
        self.visible_webhook(p, id).await
    }

    /// Changes a webhook (admin).
    pub async fn update_webhook(
        &self,
        p: &Principal,
        id: &str,
        s: WebhookSettings,
    ) -> Result<WebhookRecord> {
        let mut w = self.visible_webhook(p, id).await?;
        if let Some(url) = s.url {
            check_url(&url)?;
            w.url = url;
        }
        if let Some(types) = s.event_types {
            check_types(&types)?;
            w.event_types = types;
        }
        if let Some(secret) = s.secret {
            w.secret = secret_or_new(secret)?;
        }
        if let Some(active) = s.active {
            w.active = active;
        }
        Ok(self.sql.update_webhook(&w).await?)
    }

    /// Deletes a webhook and its delivery history (admin).
    pub async fn delete_webhook(&self, p: &Principal, id: &str) -> Result<()> {
        self.visible_webhook(p, id).await?;
        Ok(self.sql.delete_webhook(id).await?)
    }

    /// A webhook's deliveries, newest first (admin).
    pub async fn list_deliveries(
        &self,
        p: &Principal,
        id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        self.visible_webhook(p, id).await?;
        Ok(self.sql.list_deliveries(id, before, limit).await?)
    }

    /// Sends a test delivery to a webhook now (admin), even while it is disabled: a signed POST
    /// of a `webhook.test` body through the durable queue, like any delivery. Waits up to
    /// `wait` for the first attempt and returns the delivery as it then stands; a test that failed
    /// is not retried (it is marked dead).
    pub async fn send_test_webhook(
        &self,
        p: &Principal,
        id: &str,
        wait: Duration,
    ) -> Result<DeliveryRecord> {
        let w = self.visible_webhook(p, id).await?;
        let body = serde_json::json!({
            "seq": 0,
            "type": TEST_EVENT_TYPE,
            "mailbox": "",
            "context": w.context,
            "message_id": null,
            "node": self.config.node_id(),
            "time": now_secs(),
            "test": true,
        })
        .to_string();
        let delivery = self
            .sql
            .queue_test_delivery(&w.id, TEST_EVENT_TYPE, &body)
            .await?;
        let started = Instant::now();
        loop {
            let d = self.sql.get_delivery(&w.id, delivery).await?;
            if d.attempt_count > 0 || started.elapsed() >= wait {
                if d.status == "pending"
                    && d.attempt_count > 0
                    && self.sql.give_up_delivery(delivery).await?
                {
                    return Ok(self.sql.get_delivery(&w.id, delivery).await?);
                }
                return Ok(d);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
