//! The subset of OData `$filter` a Tapkey client needs: `field eq value` clauses joined by
//! `and`, values `true`/`false` or single-quoted strings (`''` escapes a quote).

/// A filter value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Bool(bool),
    Str(String),
}

/// One `field eq value` clause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    pub(crate) field: String,
    pub(crate) value: Value,
}

/// Parses a `$filter`; the error says what was not understood.
pub(crate) fn parse(filter: &str) -> Result<Vec<Clause>, String> {
    let mut clauses = Vec::new();
    let mut rest = filter.trim();
    loop {
        let (field, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("cannot parse $filter near {rest:?}"))?;
        let after = after.trim_start();
        let after = after
            .strip_prefix("eq")
            .filter(|a| a.starts_with(char::is_whitespace))
            .ok_or_else(|| format!("only 'eq' comparisons are supported (near {after:?})"))?
            .trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('\'') {
            let mut out = String::new();
            let mut chars = q.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        out.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    out.push(c);
                }
            }
            let end = end.ok_or("unterminated string literal in $filter")?;
            (Value::Str(out), &q[end..])
        } else {
            let (tok, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
            let v = match tok {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => return Err(format!("unsupported literal {other:?} in $filter")),
            };
            (v, tail)
        };
        clauses.push(Clause {
            field: field.to_owned(),
            value,
        });
        let tail = tail.trim();
        if tail.is_empty() {
            return Ok(clauses);
        }
        rest = tail
            .strip_prefix("and ")
            .ok_or_else(|| format!("only 'and' may join clauses (near {tail:?})"))?
            .trim_start();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined() {
        let c = parse("active eq true and contactId eq 'a''b' and boundLockId eq 'x y'").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].value, Value::Bool(true));
        assert_eq!(c[1].value, Value::Str("a'b".into()));
        assert_eq!(c[2].value, Value::Str("x y".into()));
        assert!(parse("active ne true").is_err());
        assert!(parse("active eq true or x eq 'y'").is_err());
        assert!(parse("identifier eq 'open").is_err());
    }
}
