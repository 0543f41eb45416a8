//! Normalisation and static checks of feature-store SQL.

/// Tokens that read the wall clock: forbidden anywhere in a certified closure.
pub const TIME_TOKENS: &[&str] = &[
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_localtime",
    "current_localtimestamp",
    "localtime",
    "localtimestamp",
    "today",
    "get_current_time",
    "get_current_timestamp",
    "transaction_timestamp",
    "random",
    "uuid",
    "gen_random_uuid",
];

/// Objects that hold outcomes: never readable from a feature closure.
pub fn is_label_object(ident: &str) -> bool {
    ident == "labels" || ident.starts_with("label_") || ident.starts_with("labels_")
}

/// Strip comments, lower-case everything outside string literals and collapse whitespace, so
/// that formatting changes do not move the view-definition hash but any semantic edit does.
pub fn normalise(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut pending_space = false;
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                pending_space = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                pending_space = true;
            }
            '\'' => {
                flush_space(&mut out, &mut pending_space);
                out.push('\'');
                while let Some(c) = chars.next() {
                    out.push(c);
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            out.push(chars.next().expect("peeked"));
                        } else {
                            break;
                        }
                    }
                }
            }
            c if c.is_whitespace() => pending_space = true,
            c => {
                flush_space(&mut out, &mut pending_space);
                out.extend(c.to_lowercase());
            }
        }
    }
    out
}

fn flush_space(out: &mut String, pending: &mut bool) {
    if *pending && !out.is_empty() {
        out.push(' ');
    }
    *pending = false;
}

/// Identifiers of normalised SQL outside string literals.
pub fn identifiers(normalised: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cur = String::new();
    let mut in_str = false;
    for c in normalised.chars() {
        if in_str {
            in_str = c != '\'';
            continue;
        }
        if c == '\'' {
            in_str = true;
        }
        if c.is_alphanumeric() || c == '_' {
            cur.push(c);
        } else if !cur.is_empty() {
            ids.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        ids.push(cur);
    }
    ids
}

/// Reasons this closure cannot be certified (empty when clean).
pub fn violations(file: &str, normalised: &str) -> Vec<String> {
    let mut out = Vec::new();
    for id in identifiers(normalised) {
        if TIME_TOKENS.contains(&id.as_str()) {
            out.push(format!("{file}: time token `{id}` in a certified closure"));
        } else if is_label_object(&id) {
            out.push(format!("{file}: label object `{id}` in a certified closure"));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_layout_and_comments_but_not_literals() {
        let a = normalise("SELECT  a -- note\nFROM T WHERE k = 'X  Y'");
        let b = normalise("select a\n  /* other */ from t where k = 'X  Y'");
        assert_eq!(a, b);
        assert_ne!(a, normalise("select a from t where k = 'x y'"));
    }

    #[test]
    fn finds_time_tokens_and_label_objects_outside_strings() {
        let v = violations("f.sql", &normalise("SELECT now(), x FROM labels WHERE s = 'now'"));
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(violations("f.sql", &normalise("SELECT 'current_date' AS s FROM obs_asof")).is_empty());
        assert!(!violations("f.sql", &normalise("SELECT CURRENT_TIMESTAMP")).is_empty());
    }
}
