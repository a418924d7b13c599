//! Object names from a template: time partitions, source, run and sequence.

use weir_core::Message;

/// Placeholders a name template may use.
const PLACEHOLDERS: [&str; 9] = ["{yyyy}", "{MM}", "{dd}", "{HH}", "{mm}", "{ss}", "{source}", "{run}", "{seq}"];

/// Check a template: only known placeholders, and `{seq}` and `{run}` present (a store's
/// `put` replaces an object of the same name).
pub fn check(template: &str) -> Result<(), String> {
    if !template.contains("{seq}") {
        return Err(format!("name `{template}` has no {{seq}}: two batches would get the same name and the second would overwrite the first"));
    }
    if !template.contains("{run}") {
        return Err(format!(
            "name `{template}` has no {{run}}: {{seq}} starts again at 0 when weir restarts, and the first batches after a restart would overwrite the last run's"
        ));
    }
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e + 1).ok_or_else(|| format!("name `{template}` has an unclosed `{{`"))?;
        let placeholder = &rest[start..end];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(format!("name `{template}`: unknown placeholder {placeholder} (known: {})", PLACEHOLDERS.join(" ")));
        }
        rest = &rest[end..];
    }
    Ok(())
}

/// The name of the object holding `first` and the rest of its batch.
pub fn render(template: &str, first: &Message, run: u64, seq: u64) -> String {
    let (year, month, day, hour, minute, second) = civil(first.meta().ingest_time_ms / 1000);
    let source: String = first.meta().source.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    template
        .replace("{yyyy}", &format!("{year:04}"))
        .replace("{MM}", &format!("{month:02}"))
        .replace("{dd}", &format!("{day:02}"))
        .replace("{HH}", &format!("{hour:02}"))
        .replace("{mm}", &format!("{minute:02}"))
        .replace("{ss}", &format!("{second:02}"))
        .replace("{source}", &source)
        .replace("{run}", &run.to_string())
        .replace("{seq}", &format!("{seq:06}"))
}

/// UTC calendar date and time of a Unix time in seconds (days-from-civil, inverted).
fn civil(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u64;
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Ack, Metadata};

    #[test]
    fn renders_time_partitions_in_utc() {
        let mut meta = Metadata::new("plant/7".into(), "t");
        meta.ingest_time_ms = 1_795_317_406_335; // 2026-11-22T03:16:46.335Z
        let message = Message::new(&b"{}"[..], meta, Ack::none());
        assert_eq!(render("{yyyy}/{MM}/{dd}/{HH}/{mm}{ss}/{source}-{run}-{seq}.jsonl", &message, 7, 42), "2026/11/22/03/1646/plant_7-7-000042.jsonl");
    }

    #[test]
    fn leap_day_and_year_end() {
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_798_761_599), (2026, 12, 31, 23, 59, 59));
    }

    #[test]
    fn a_template_without_seq_or_run_or_with_typos_is_refused() {
        assert!(check("{yyyy}/{source}.jsonl").unwrap_err().contains("overwrite"));
        assert!(check("{yyyy}/{sequence}-{run}-{seq}.jsonl").unwrap_err().contains("unknown placeholder {sequence}"));
        assert!(check("{yyyy}/{MM}/{seq}.jsonl").unwrap_err().contains("has no {run}: {seq} starts again at 0 when weir restarts"));
        assert!(check("{yyyy}/{MM}/{run}-{seq}.jsonl").is_ok());
    }
}
