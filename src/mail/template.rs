//! Asterisk-style email templates: `${VM_*}` variables and voicemail.conf's backslash escapes.

use std::collections::BTreeMap;

/// The variables a template may use (Asterisk's names).
pub const KNOWN_VARS: &[&str] = &[
    "VM_NAME",
    "VM_DUR",
    "VM_MSGNUM",
    "VM_CONTEXT",
    "VM_MAILBOX",
    "VM_CALLERID",
    "VM_CIDNUM",
    "VM_CIDNAME",
    "VM_DATE",
    "VM_CATEGORY",
    "VM_FLAG",
    "ORIG_VM_CALLERID",
    "ORIG_VM_CIDNUM",
    "ORIG_VM_CIDNAME",
    "ORIG_VM_DATE",
];

/// Values of the variables for one message.
pub type Vars = BTreeMap<&'static str, String>;

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `${` without its closing `}`.
    #[error("unclosed ${{ at character {0}")]
    Unclosed(usize),
    /// A backslash escape voicemail.conf does not know.
    #[error("unknown escape \\{0} at character {1} (use \\n, \\t, \\r or \\\\)")]
    Escape(char, usize),
}

/// Checks a template: balanced `${…}` and known escapes. Returns the names of unknown variables
/// (kept visible in the output, so a typo shows in the mail instead of vanishing).
pub fn validate(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut unknown = Vec::new();
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => match chars.get(i + 1) {
                Some('n' | 't' | 'r' | '\\') => i += 2,
                Some(c) => return Err(TemplateError::Escape(*c, i)),
                None => return Err(TemplateError::Escape(' ', i)),
            },
            '$' if chars.get(i + 1) == Some(&'{') => {
                let end = closing(&chars, i + 2).ok_or(TemplateError::Unclosed(i))?;
                let name: String = chars[i + 2..end].iter().collect();
                if !KNOWN_VARS.contains(&name.as_str()) && !unknown.contains(&name) {
                    unknown.push(name);
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    Ok(unknown)
}

/// Index of the `}` closing a `${` whose content starts at `from` (nested `${…}` allowed).
fn closing(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 1;
            }
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Renders a template: escapes first (as voicemail.conf is read), then variables. Unknown
/// variables and unclosed `${` stay as written.
pub fn render(template: &str, vars: &Vars) -> String {
    let unescaped = unescape(template);
    let chars: Vec<char> = unescaped.chars().collect();
    let mut out = String::with_capacity(unescaped.len() + 64);
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$'
            && chars.get(i + 1) == Some(&'{')
            && let Some(end) = closing(&chars, i + 2)
        {
            let name: String = chars[i + 2..end].iter().collect();
            match vars.get(name.as_str()) {
                Some(v) => out.push_str(v),
                None => out.extend(&chars[i..=end]),
            }
            i = end + 1;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Asterisk's `ast_callerid_merge`: `"Name" <num>`, or either part alone.
pub fn merge_callerid(name: &str, num: &str) -> String {
    match (name.is_empty(), num.is_empty()) {
        (false, false) => format!("\"{name}\" <{num}>"),
        (false, true) => name.to_owned(),
        (true, false) => num.to_owned(),
        (true, true) => String::new(),
    }
}

/// Asterisk's `ast_callerid_split` of a merged caller id: (name, number).
pub fn split_callerid(callerid: &str) -> (String, String) {
    let s = callerid.trim();
    if let (Some(lt), Some(gt)) = (s.rfind('<'), s.rfind('>'))
        && lt < gt
    {
        let num = s[lt + 1..gt].trim().to_owned();
        let name = s[..lt].trim().trim_matches('"').to_owned();
        return (name, num);
    }
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "+*#".contains(c)) {
        (String::new(), s.to_owned())
    } else {
        (s.trim_matches('"').to_owned(), String::new())
    }
}

/// `m:ss`, as `${VM_DUR}`.
pub fn duration(secs: i64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.insert("VM_NAME", "Alice".into());
        v.insert("VM_MSGNUM", "3".into());
        v.insert("VM_MAILBOX", "1001".into());
        v
    }

    #[test]
    fn renders_variables_and_escapes_like_voicemail_conf() {
        let t = r"Dear ${VM_NAME}:\n\n\tmessage ${VM_MSGNUM} in ${VM_MAILBOX}";
        assert_eq!(render(t, &vars()), "Dear Alice:\n\n\tmessage 3 in 1001");
    }

    #[test]
    fn unknown_variables_stay_visible() {
        assert_eq!(
            render("x ${VM_NAMEE} y ${IF($[1]?a:b)} ${VM_NAME", &vars()),
            "x ${VM_NAMEE} y ${IF($[1]?a:b)} ${VM_NAME"
        );
        assert_eq!(
            validate("x ${VM_NAMEE} ${VM_NAME} ${VM_NAMEE}").unwrap(),
            ["VM_NAMEE"]
        );
    }

    #[test]
    fn validation_refuses_unclosed_variables_and_unknown_escapes() {
        assert_eq!(validate("a ${VM_NAME"), Err(TemplateError::Unclosed(2)));
        assert!(matches!(
            validate(r"a \q"),
            Err(TemplateError::Escape('q', 2))
        ));
        assert_eq!(
            validate(r"ok \n\t\\ ${VM_DUR}").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn caller_ids_merge_and_split_as_asterisk_does() {
        assert_eq!(merge_callerid("Bob", "555"), "\"Bob\" <555>");
        assert_eq!(merge_callerid("", "555"), "555");
        assert_eq!(
            split_callerid("\"Bob\" <555>"),
            ("Bob".into(), "555".into())
        );
        assert_eq!(split_callerid("555"), (String::new(), "555".into()));
        assert_eq!(duration(65), "1:05");
        assert_eq!(duration(7), "0:07");
    }
}
