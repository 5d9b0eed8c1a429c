//! JSON log lines that carry the trace: every line written inside a span starts with
//! `"trace_id"` and `"span_id"` (lowercase hex, as in W3C `traceparent` and the OTLP exporters'
//! output), so a log search for a trace id finds every line of that request, in every service.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use opentelemetry::trace::TraceContextExt as _;
use tracing::{Event, Subscriber, dispatcher::WeakDispatch};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, JsonFields, Writer},
    },
    registry::LookupSpan,
};

/// Where the formatter finds the subscriber it runs in (set once the subscriber is built):
/// inside an event callback `tracing::dispatcher::get_default` answers "no subscriber", so
/// the OpenTelemetry context of the event's span is looked up through this handle instead.
pub type DispatchCell = Arc<OnceLock<WeakDispatch>>;

/// The JSON event format of every service (flattened fields, the current span), with the
/// event's OpenTelemetry trace and span ids in front.
#[derive(Debug)]
pub struct JsonWithTraceIds {
    inner: Format<Json>,
    dispatch: DispatchCell,
}

impl JsonWithTraceIds {
    /// The formatter and the cell to fill with the subscriber's dispatch once it exists.
    pub fn new() -> (JsonWithTraceIds, DispatchCell) {
        let dispatch = DispatchCell::default();
        let inner = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false);
        (
            JsonWithTraceIds {
                inner,
                dispatch: dispatch.clone(),
            },
            dispatch,
        )
    }

    /// (trace id, span id) of the span the event belongs to, if it has a valid context.
    fn ids<S, N>(&self, ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let span = ctx.event_scope()?.next()?;
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Before formatting: the lookup must not run while span extensions are borrowed.
        let ids = self.ids(ctx);
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match (ids, line.strip_prefix('{')) {
            (Some((trace_id, span_id)), Some(rest)) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            _ => writer.write_str(&line),
        }
    }
}

/// The fields formatter that goes with [`JsonWithTraceIds`].
pub fn json_fields() -> JsonFields {
    JsonFields::new()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::TracerProvider as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::{fmt::MakeWriter, layer::SubscriberExt as _};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// Issue 24: a JSON line inside a span names the span's trace and span ids; a line
    /// outside any span has none.
    #[test]
    fn json_lines_in_a_span_carry_trace_and_span_ids() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let (format, cell) = JsonWithTraceIds::new();
        let out = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(json_fields())
                    .event_format(format)
                    .with_writer(out.clone()),
            );
        let dispatch = tracing::Dispatch::new(subscriber);
        cell.set(dispatch.downgrade()).unwrap();
        let expected = tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("before any span");
            let span = tracing::info_span!("webhook", tenant = "acme");
            let _entered = span.enter();
            tracing::info!(booking = "B-1", "accepted");
            let cx = span.context();
            let otel_span = cx.span();
            let sc = otel_span.span_context();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        assert_eq!(lines[1]["trace_id"], expected.0.as_str(), "{text}");
        assert_eq!(lines[1]["span_id"], expected.1.as_str(), "{text}");
        assert_eq!(lines[1]["booking"], "B-1", "{text}");
        assert_eq!(lines[1]["span"]["name"], "webhook", "{text}");
        assert_eq!(expected.0.len(), 32);
    }
}
