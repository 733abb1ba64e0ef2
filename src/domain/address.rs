use std::fmt;
use std::str::FromStr;

/// `mailbox@context`, Asterisk's address of a voicemail box.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxAddress {
    pub mailbox: String,
    pub context: String,
}

/// Why a mailbox address or context name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("a mailbox address is written mailbox@context, e.g. 1001@default")]
    MissingContext,
    #[error("mailbox must be 1-30 characters of digits, letters, '-', '_', '.', '+' or '*'")]
    BadMailbox,
    #[error("context must be 1-80 characters of letters, digits, '-', '_' or '.'")]
    BadContext,
}

// The JSON Schema (ECMA-262) patterns of what `valid_mailbox` and `validate_context_name` accept.
// No lookahead (not every generator supports it), so "." and ".." are left out by three
// alternatives: a first character that is not a dot, a dot then a non-dot, or two dots and more.
macro_rules! mailbox_re {
    () => {
        concat!(
            "(?:[A-Za-z0-9_+*-][A-Za-z0-9._+*-]{0,29}",
            "|\\.[A-Za-z0-9_+*-][A-Za-z0-9._+*-]{0,28}",
            "|\\.\\.[A-Za-z0-9._+*-]{1,28})"
        )
    };
}
macro_rules! context_re {
    () => {
        concat!(
            "(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}",
            "|\\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,78}",
            "|\\.\\.[A-Za-z0-9._-]{1,78})"
        )
    };
}

/// Pattern of a mailbox number, the part of an address before `@`.
pub const MAILBOX_PATTERN: &str = concat!("^", mailbox_re!(), "$");
/// Pattern of a context (tenant) name.
pub const CONTEXT_PATTERN: &str = concat!("^", context_re!(), "$");
/// Pattern of a mailbox address, `mailbox@context`.
pub const ADDRESS_PATTERN: &str = concat!("^", mailbox_re!(), "@", context_re!(), "$");

// Characters Asterisk dialplans use in extensions; anything else (notably '/', '@', spaces) would be
// ambiguous in spool paths, URLs or IMAP searches.
fn valid_mailbox(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 30
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'*'))
        && s != "."
        && s != ".."
}

/// Checks a context (tenant) name.
pub fn validate_context_name(s: &str) -> Result<(), AddressError> {
    let ok = !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != "..";
    if ok {
        Ok(())
    } else {
        Err(AddressError::BadContext)
    }
}

impl MailboxAddress {
    pub fn new(mailbox: &str, context: &str) -> Result<Self, AddressError> {
        if !valid_mailbox(mailbox) {
            return Err(AddressError::BadMailbox);
        }
        validate_context_name(context)?;
        Ok(Self {
            mailbox: mailbox.to_owned(),
            context: context.to_owned(),
        })
    }
}

impl FromStr for MailboxAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mailbox, context) = s.rsplit_once('@').ok_or(AddressError::MissingContext)?;
        Self::new(mailbox, context)
    }
}

impl fmt::Display for MailboxAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.mailbox, self.context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mailbox_at_context() {
        let a: MailboxAddress = "1001@default".parse().unwrap();
        assert_eq!(a.mailbox, "1001");
        assert_eq!(a.context, "default");
        assert_eq!(a.to_string(), "1001@default");
    }

    #[test]
    fn refuses_malformed_addresses() {
        assert_eq!(
            "1001".parse::<MailboxAddress>(),
            Err(AddressError::MissingContext)
        );
        assert_eq!(
            "@default".parse::<MailboxAddress>(),
            Err(AddressError::BadMailbox)
        );
        assert_eq!(
            "10/01@default".parse::<MailboxAddress>(),
            Err(AddressError::BadMailbox)
        );
        assert_eq!(
            "1001@".parse::<MailboxAddress>(),
            Err(AddressError::BadContext)
        );
        assert_eq!(
            "1001@../etc".parse::<MailboxAddress>(),
            Err(AddressError::BadContext)
        );
    }
}
