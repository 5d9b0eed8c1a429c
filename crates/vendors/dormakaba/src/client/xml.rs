//! XML on top of quick-xml: a writer that escapes every text value (guest names arrive from
//! upstream PMSs and may hold `&`, `<`, quotes or any Unicode), and a small namespace-agnostic
//! tree reader for replies (the lock system prefixes elements as it pleases).

use quick_xml::Reader;
use quick_xml::Writer;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

/// Builds an XML document; every text goes through quick-xml's escaping.
pub(crate) struct XmlWriter {
    w: Writer<Vec<u8>>,
    open: Vec<String>,
}

impl XmlWriter {
    /// A document with the `<?xml version="1.0" encoding="utf-8"?>` declaration.
    pub(crate) fn new() -> Self {
        let mut w = Writer::new(Vec::with_capacity(2048));
        // Writing into a Vec cannot fail.
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)));
        XmlWriter {
            w,
            open: Vec::new(),
        }
    }

    /// Opens `<name attr="value"...>`; attribute values are escaped by quick-xml.
    pub(crate) fn open(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Self {
        let mut start = BytesStart::new(name);
        for (k, v) in attrs {
            start.push_attribute((*k, *v));
        }
        let _ = self.w.write_event(Event::Start(start));
        self.open.push(name.to_owned());
        self
    }

    /// Closes the innermost open element.
    pub(crate) fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            let _ = self.w.write_event(Event::End(BytesEnd::new(name)));
        }
        self
    }

    /// `<name>text</name>` with `text` escaped (and characters XML 1.0 cannot carry dropped).
    pub(crate) fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        let clean = xml_safe(text);
        let _ = self
            .w
            .write_event(Event::Start(BytesStart::new(name)))
            .and_then(|()| self.w.write_event(Event::Text(BytesText::new(&clean))))
            .and_then(|()| self.w.write_event(Event::End(BytesEnd::new(name))));
        self
    }

    /// The finished document (closing anything still open).
    pub(crate) fn finish(mut self) -> Vec<u8> {
        while !self.open.is_empty() {
            self.close();
        }
        self.w.into_inner()
    }
}

/// Drops characters XML 1.0 cannot represent at all (C0 controls other than tab, LF, CR):
/// escaping cannot save them and the lock system would reject the whole request.
fn xml_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    if s.chars().any(bad) {
        std::borrow::Cow::Owned(s.chars().filter(|c| !bad(*c)).collect())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// An element of a reply: local name (prefix stripped), unescaped text, children.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// First child with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Trimmed text of the child with this local name.
    pub(crate) fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// Depth-first search for the first element with this local name.
    pub(crate) fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

fn local(name: &[u8]) -> String {
    let n = match name.iter().rposition(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(n).into_owned()
}

/// Parses a document into its root element.
pub(crate) fn parse(input: &[u8]) -> Result<Element, String> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let attach = |stack: &mut Vec<Element>, root: &mut Option<Element>, el: Element| match stack
        .last_mut()
    {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    };
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("malformed XML: {e}"))?
        {
            Event::Start(e) => stack.push(Element {
                name: local(e.name().as_ref()),
                ..Element::default()
            }),
            Event::Empty(e) => {
                let el = Element {
                    name: local(e.name().as_ref()),
                    ..Element::default()
                };
                attach(&mut stack, &mut root, el);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced end tag")?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    let s = t
                        .xml_content(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| format!("bad text: {e}"))?;
                    cur.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    let s = t.decode().map_err(|e| format!("bad CDATA: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_escaped_and_reads_back() {
        let name = "O'Brien & <Sons> \"Zoë\" 東京\u{1}";
        let mut w = XmlWriter::new();
        w.open("a:x", &[("xmlns:a", "urn:x&y")])
            .leaf("a:GuestName", name);
        let doc = w.finish();
        let text = String::from_utf8(doc.clone()).unwrap();
        assert!(text.contains("&amp;") && text.contains("&lt;") && !text.contains('\u{1}'));
        let root = parse(&doc).unwrap();
        assert_eq!(root.name, "x");
        assert_eq!(
            root.child("GuestName").map(|e| e.text.as_str()),
            Some("O'Brien & <Sons> \"Zoë\" 東京")
        );
        assert!(parse(b"<x><n></x>").is_err());
        assert_eq!(
            parse(b"<x><n>&#233;&amp;</n></x>").unwrap().text_of("n"),
            Some("é&")
        );
    }
}
