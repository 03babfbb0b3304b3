//! TQ1 to a ServiceRequest's `occurrenceTiming` (IG `TQ1[ServiceRequest]`,
//! with `RPT[Timing]` for the repeat pattern): when, how often, how long.

use super::codes::ucum_time_unit;
use super::datatypes::{codeable_concept, decimal, first_part, parts};
use super::demographics::{cq_quantity, period};
use super::fhir::{Timing, TimingRepeat};
use super::specimen::sub;
use super::Tables;
use crate::hl7::message::{Delimiters, SegmentView};

/// The timing of one TQ1; `None` when it says nothing the IG maps here.
pub(super) fn from_tq1<'a>(
    tq1: &SegmentView<'a>,
    d: &Delimiters,
    t: &'a Tables,
) -> Option<Timing<'a>> {
    let tz = t.default_timezone.as_str();
    let field = |n: usize| tq1.field(n).unwrap_or("");
    let first = |n: usize| first_part(field(n), d.repetition);
    let valued = |n: usize| !first(n).trim().is_empty();
    let rpt = parts(first(3), d.component);
    let sd = sub(d);
    // IG RPT.1: the repeat pattern's code (table 0335).
    let code = codeable_concept(rpt.get(0), &sd, t, Some("0335"));
    let (start, end) = (first(7), first(8));
    let mut repeat = TimingRepeat {
        bounds_period: period(start, end, d, tz),
        // IG TQ1-6: a duration bounds the timing only without start and end.
        bounds_duration: (!valued(7) && !valued(8))
            .then(|| cq_quantity(first(6), d))
            .flatten(),
        count_max: first(14).trim().parse::<u32>().ok().filter(|n| *n > 0),
        time_of_day: field(4)
            .split(d.repetition)
            .filter_map(|tm| time_of_day(first_part(tm, d.component)))
            .collect(),
        // IG TQ1-5, unless RPT-9 gives the offset: minutes.
        offset: rpt
            .get(8)
            .trim()
            .is_empty()
            .then(|| offset_minutes(first(5), d))
            .flatten(),
        ..TimingRepeat::default()
    };
    // IG TQ1-13: how long each occurrence lasts; FHIR needs its unit too.
    let occurrence = parts(first(13), d.component);
    let unit = first_part(occurrence.get(1), d.subcomponent);
    if let (Some(n), Some(u)) = (decimal(occurrence.get(0)), ucum_time_unit(unit)) {
        repeat.duration = Some(n);
        repeat.duration_unit = Some(u);
    }
    let repeat = (!repeat.is_empty()).then_some(repeat);
    (repeat.is_some() || code.is_some()).then_some(Timing { repeat, code })
}

/// TM (`HHMM[SS]`) to a FHIR time (`HH:MM:SS`).
fn time_of_day(tm: &str) -> Option<String> {
    let tm = tm.trim();
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    let (h, m) = (tm.get(..2)?, tm.get(2..4)?);
    let s = tm.get(4..6).unwrap_or("00");
    let ok = digits(h) && digits(m) && digits(s) && h < "24" && m < "60" && s < "60";
    (ok && matches!(tm.len(), 4 | 6)).then(|| format!("{h}:{m}:{s}"))
}

/// CQ to whole minutes, by its unit (minutes when none is given).
fn offset_minutes(v: &str, d: &Delimiters) -> Option<u32> {
    let p = parts(v, d.component);
    let n: f64 = p.get(0).trim().parse().ok()?;
    let per_unit = match ucum_time_unit(first_part(p.get(1), d.subcomponent)) {
        Some("s") => 1.0 / 60.0,
        Some("h") => 60.0,
        Some("d") => 1440.0,
        Some("wk") => 10080.0,
        None | Some("min") => 1.0,
        Some(_) => return None,
    };
    let minutes = (n * per_unit).round();
    (minutes >= 0.0 && minutes <= f64::from(u32::MAX)).then_some(minutes as u32)
}
