//! API keys: tokens are shown once; only their SHA-256 is stored (they are 256-bit random, so a fast
//! hash is enough — argon2 is for low-entropy PINs).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{Result, ServiceError, Voicemail};
use crate::domain::{ApiKeyId, Principal, Role, validate_context_name};
use crate::store::{ApiKeyRecord, StoreError};

/// A key just created, with its token (never retrievable again).
pub struct NewApiKey {
    pub record: ApiKeyRecord,
    pub token: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("record", &self.record)
            .field("token", &"***")
            .finish()
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Remembers when each key's `last_used_at` was last written, so a busy key costs one write a minute.
static LAST_TOUCH: Mutex<Option<HashMap<ApiKeyId, Instant>>> = Mutex::new(None);

fn should_touch(id: ApiKeyId) -> bool {
    let Ok(mut guard) = LAST_TOUCH.lock() else {
        return false;
    };
    let map = guard.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    match map.get(&id) {
        Some(t) if now.duration_since(*t) < Duration::from_secs(60) => false,
        _ => {
            map.insert(id, now);
            true
        }
    }
}

impl Voicemail {
    /// Creates an API key; `context` scopes it to one tenant.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        context: Option<&str>,
    ) -> Result<NewApiKey> {
        let name = name.trim();
        if name.is_empty() || name.len() > 120 {
            return Err(ServiceError::Invalid(
                "key name must be 1-120 characters".into(),
            ));
        }
        if let Some(c) = context {
            validate_context_name(c)?;
            self.sql
                .get_context(c)
                .await
                .map_err(|_| ServiceError::NotFound(format!("context {c}")))?;
        }
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let token = format!(
            "vxm_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let prefix: String = token.chars().take(12).collect();
        let record = self
            .sql
            .create_api_key(name, role, context, &prefix, &token_hash(&token))
            .await?;
        Ok(NewApiKey { record, token })
    }

    /// All API keys.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        Ok(self.sql.list_api_keys().await?)
    }

    /// Revokes a key by id or token prefix.
    pub async fn revoke_api_key(&self, id_or_prefix: &str) -> Result<ApiKeyRecord> {
        self.sql
            .revoke_api_key(id_or_prefix)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ServiceError::NotFound(format!("API key {id_or_prefix}")),
                other => other.into(),
            })
    }

    /// The principal a bearer token stands for; `None` when the token is unknown or revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        if !token.starts_with("vxm_") || token.len() > 200 {
            return Ok(None);
        }
        let key = match self.sql.find_api_key(&token_hash(token)).await {
            Ok(k) => k,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if should_touch(key.id)
            && let Err(e) = self.sql.touch_api_key(key.id).await
        {
            tracing::warn!(error = %e, "could not record API key use");
        }
        Ok(Some(Principal {
            key_id: key.id,
            role: key.role,
            context: key.context,
        }))
    }
}
