use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use utoipa::ToSchema;

/// A voicemail folder, named as Asterisk names them. Custom folders are `Cust1`..`Cust5` in Asterisk
/// and free names here (letters, digits, '-' and '_', up to 30).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Folder {
    Inbox,
    Old,
    Work,
    Family,
    Friends,
    Urgent,
    Deleted,
    Custom(String),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown folder {0:?}: use INBOX, Old, Work, Family, Friends, Urgent, Deleted or a custom name of letters, digits, '-' and '_'"
)]
pub struct FolderError(pub String);

impl Folder {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Inbox => "INBOX",
            Self::Old => "Old",
            Self::Work => "Work",
            Self::Family => "Family",
            Self::Friends => "Friends",
            Self::Urgent => "Urgent",
            Self::Deleted => "Deleted",
            Self::Custom(s) => s,
        }
    }

    /// Parses a folder name; the standard names are matched case-insensitively.
    pub fn parse(s: &str) -> Result<Self, FolderError> {
        let std = [
            Self::Inbox,
            Self::Old,
            Self::Work,
            Self::Family,
            Self::Friends,
            Self::Urgent,
            Self::Deleted,
        ];
        if let Some(f) = std.into_iter().find(|f| f.as_str().eq_ignore_ascii_case(s)) {
            return Ok(f);
        }
        // Asterisk's index names for the custom folders map to those folders' names.
        let valid_custom = !s.is_empty()
            && s.len() <= 30
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid_custom {
            Ok(Self::Custom(s.to_owned()))
        } else {
            Err(FolderError(s.to_owned()))
        }
    }

    /// Messages in these folders count as "new" while unread (Asterisk: INBOX + Urgent).
    pub fn counts_as_new(&self) -> bool {
        matches!(self, Self::Inbox | Self::Urgent)
    }
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl utoipa::PartialSchema for Folder {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "INBOX, Old, Work, Family, Friends, Urgent, Deleted, or a custom folder name",
            ))
            .examples(["INBOX"])
            .into()
    }
}

impl ToSchema for Folder {}

impl Serialize for Folder {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Folder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Folder::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Asterisk's message flag. The API names Asterisk's empty flag `None` (an empty enum value is
/// one generated clients cannot name); `as_str` gives Asterisk's own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Flag {
    None,
    Urgent,
    #[serde(rename = "PRIORITY")]
    Priority,
}

impl Flag {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Urgent => "Urgent",
            Self::Priority => "PRIORITY",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("urgent") {
            Self::Urgent
        } else if s.eq_ignore_ascii_case("priority") {
            Self::Priority
        } else {
            Self::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_folders_parse_case_insensitively() {
        assert_eq!(Folder::parse("inbox").unwrap(), Folder::Inbox);
        assert_eq!(Folder::parse("OLD").unwrap(), Folder::Old);
        assert_eq!(
            Folder::parse("Cust1").unwrap(),
            Folder::Custom("Cust1".into())
        );
        assert!(Folder::parse("../x").is_err());
        assert!(Folder::parse("").is_err());
    }
}
