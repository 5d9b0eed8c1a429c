//! A tiny namespace-agnostic XML tree on top of quick-xml, enough to read SOAP requests, and
//! the escaping used when writing responses.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

/// An element: local name (prefix stripped), text content (unescaped) and children.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Element {
    pub(crate) name: String,
    /// Namespace prefix of the element name, if any.
    pub(crate) prefix: Option<String>,
    /// `xmlns` / `xmlns:p` declarations on this element: (prefix, uri).
    pub(crate) ns_decls: Vec<(Option<String>, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// First child with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Follows a path of local names.
    pub(crate) fn path(&self, names: &[&str]) -> Option<&Element> {
        names.iter().try_fold(self, |e, n| e.child(n))
    }

    /// Text of the child with this local name, if present.
    pub(crate) fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// The namespace URI of the last element of an ancestor chain (root first).
pub(crate) fn namespace_of(chain: &[&Element]) -> Option<String> {
    let last = chain.last()?;
    let want = last.prefix.clone();
    chain.iter().rev().find_map(|e| {
        e.ns_decls
            .iter()
            .find(|(p, _)| *p == want)
            .map(|(_, u)| u.clone())
    })
}

fn start(e: &quick_xml::events::BytesStart<'_>) -> Element {
    let qname = e.name();
    let raw = qname.as_ref();
    let prefix = raw
        .iter()
        .rposition(|b| *b == b':')
        .map(|i| String::from_utf8_lossy(&raw[..i]).into_owned());
    let mut ns_decls = Vec::new();
    for a in e.attributes().flatten() {
        let key = a.key.as_ref();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .unwrap_or_default();
        if key == b"xmlns" {
            ns_decls.push((None, value));
        } else if let Some(p) = key.strip_prefix(b"xmlns:") {
            ns_decls.push((Some(String::from_utf8_lossy(p).into_owned()), value));
        }
    }
    Element {
        name: local(raw),
        prefix,
        ns_decls,
        ..Element::default()
    }
}

fn local(name: &[u8]) -> String {
    let n = match name.iter().rposition(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(n).into_owned()
}

/// Parses a document and returns its root element.
pub(crate) fn parse(input: &[u8]) -> Result<Element, String> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("malformed XML: {e}"))?;
        match ev {
            Event::Start(e) => stack.push(start(&e)),
            Event::Empty(e) => {
                let el = start(&e);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err("unbalanced end tag".into());
                };
                if !el.children.is_empty() && el.text.trim().is_empty() {
                    el.text.clear();
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    let s = t
                        .xml_content(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| format!("bad text encoding: {e}"))?;
                    cur.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    let s = t.decode().map_err(|e| format!("bad CDATA encoding: {e}"))?;
                    cur.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let Some(cur) = stack.last_mut() else {
                    continue;
                };
                if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad character reference: {e}"))?
                {
                    cur.text.push(c);
                } else {
                    let name = r.decode().map_err(|e| format!("bad entity: {e}"))?;
                    let v = resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?;
                    cur.text.push_str(v);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".into());
    }
    root.ok_or_else(|| "empty document".into())
}

/// Escapes text for element content or attribute values (`&`, `<`, `>`, `"`, `'`).
pub(crate) fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_special_characters() {
        let name = "O'Brien & <Sons> \"Zoë\" 東京";
        let doc = format!(
            "<a:x xmlns:a=\"u\"><a:GuestName>{}</a:GuestName><b/></a:x>",
            esc(name)
        );
        let root = parse(doc.as_bytes()).unwrap();
        assert_eq!(root.name, "x");
        assert_eq!(root.text_of("GuestName"), Some(name));
        assert!(root.child("b").is_some());
        let doc2 = "<x><n>&#233;&#x41;&amp;&lt;</n></x>";
        assert_eq!(parse(doc2.as_bytes()).unwrap().text_of("n"), Some("éA&<"));
        assert!(parse(b"<x><n>&bogus;</n></x>").is_err());
        assert!(parse(b"<x><n></x>").is_err());
    }
}
