//! `hl7bridge inspect FILE...` prints each message as a readable tree (named
//! fields, repetitions, components, decoded escapes), flags structural
//! problems at their line and column, and exits 1 if any message has one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Runs `hl7bridge inspect ARGS...`: (exit code, stdout).
fn inspect(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hl7bridge"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("run hl7bridge");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    (out.status.code().expect("exit code"), stdout)
}

fn inspect_fixture(name: &str) -> (i32, String) {
    inspect(&[fixture(name).as_os_str()])
}

fn problem_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("! ")).collect()
}

#[test]
fn fields_are_named_and_composites_broken_into_named_components() {
    let (code, out) = inspect_fixture("oru_r01_v251.hl7");
    assert_eq!(code, 0, "{out}");
    let heading = out.lines().next().unwrap_or("");
    assert!(heading.starts_with("message 1 ("), "{heading}");
    assert!(
        heading.ends_with(
            "oru_r01_v251.hl7, 1 of 1): ORU^R01 control ID FX-ORU-R01-251, v2.5.1, 18 segments"
        ),
        "{heading}"
    );
    for expected in [
        "  MSH-1  Field Separator: |",
        "  MSH-2  Encoding Characters: ^~\\&",
        "  MSH-3  Sending Application: LABAPP",
        "  MSH-10 Message Control ID: FX-ORU-R01-251",
        // One repetition: raw value, then its components by name.
        "  PID-5  Patient Name: TESTPATIENT^HOTEL^M^^^^L",
        "        .1 Family Name: TESTPATIENT",
        "        .2 Given Name: HOTEL",
        "        .7 Name Type Code: L",
        // Several repetitions: one [n] entry each.
        "  PID-3  Patient Identifier List",
        "    [1] PI50005^^^GENHOSP^PI",
        "        .1 ID Number: PI50005",
        "        .4 Assigning Authority: GENHOSP",
        "        .5 Identifier Type Code: PI",
        "    [2] MRN50005^^^GENHOSP^MR",
        // OBX-5 is read as the type OBX-2 names (CWE here).
        "  OBX-5  Observation Value: 260373001^Detected^SCT",
        "        .2 Text: Detected",
    ] {
        assert!(
            out.lines().any(|l| l == expected),
            "missing {expected:?} in\n{out}"
        );
    }
    // Empty fields are omitted: PID-2 and PID-4 are empty in the fixture.
    assert!(!out.contains("PID-2 "), "{out}");
    assert!(!out.contains("PID-4 "), "{out}");
}

#[test]
fn escapes_are_decoded_and_formatting_is_shown_readably() {
    let (code, out) = inspect_fixture("oru_r01_v251.hl7");
    assert_eq!(code, 0, "{out}");
    // OBX 3 (TX): `...line two \T\ more text.` -> `&`.
    assert!(
        out.lines()
            .any(|l| l == "    [2] Synthetic narrative line two & more text."),
        "{out}"
    );
    assert!(!out.contains("\\T\\"), "{out}");
    // OBX 4 (FT): \H\...\N\ is highlighting, \.br\ a line break.
    let ft = "  OBX-5  Observation Value: {highlight}SYNTHETIC DIAGNOSIS{/highlight}\n\
              \x20                           Specimen: synthetic test tissue.\n\
              \x20                           Impression: benign synthetic finding.\n";
    assert!(out.contains(ft), "{out}");
    assert!(!out.contains("\\.br\\"), "{out}");
}

#[test]
fn a_batch_file_lists_each_message() {
    let (code, out) = inspect_fixture("batch_fhs_bhs.hl7");
    assert_eq!(code, 0, "{out}");
    let headings: Vec<&str> = out.lines().filter(|l| l.starts_with("message ")).collect();
    assert_eq!(headings.len(), 3, "{out}");
    for (i, (n, ty, id)) in [
        (1, "ADT^A01", "FX-BATCH1-ADT-A01"),
        (2, "ORU^R01", "FX-BATCH1-ORU-R01"),
        (3, "ADT^A08", "FX-BATCH1-ADT-A08"),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            headings[i].starts_with(&format!("message {n} (")),
            "{headings:?}"
        );
        assert!(
            headings[i].contains(&format!(
                "batch_fhs_bhs.hl7, {n} of 3): {ty} control ID {id}, v2.5.1"
            )),
            "{headings:?}"
        );
    }
    // Segment lines are lines of the file: the third message's MSH follows
    // FHS, BHS and the 12 segments of the first two messages.
    assert!(out.contains("\nMSH (line 15)\n"), "{out}");
}

#[test]
fn a_file_without_msh_is_flagged_at_line_1_column_1() {
    let (code, out) = inspect_fixture("broken_no_msh.hl7");
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        problem_lines(&out),
        [
            "! line 1, column 1: message does not start with an MSH segment (it starts with \"PID\")"
        ],
        "{out}"
    );
    // Its segments are still shown.
    assert!(out.contains("  PID-1  Set ID - PID: 1"), "{out}");
}

#[test]
fn bad_encoding_characters_are_flagged_at_msh_2() {
    let (code, out) = inspect_fixture("broken_bad_encoding_chars.hl7");
    assert_eq!(code, 1, "{out}");
    let problems = problem_lines(&out);
    assert!(
        problems[0].starts_with(
            "! line 1, column 5: MSH-2 encoding characters \"^~\" are 2 characters; expected 4 or 5 distinct"
        ),
        "{out}"
    );
}

#[test]
fn a_truncated_msh_is_flagged_where_the_missing_fields_would_start() {
    let (code, out) = inspect_fixture("broken_truncated_msh.hl7");
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        problem_lines(&out),
        [
            "! line 1, column 61: MSH-9 Message Type is missing: the MSH segment ends after MSH-7",
            "! line 1, column 61: MSH-10 Message Control ID is missing: the MSH segment ends after MSH-7",
        ],
        "{out}"
    );
    assert!(
        out.lines().next().unwrap_or("").ends_with(
            "broken_truncated_msh.hl7, 1 of 1): no message type, no control ID, no version, 1 segment"
        ),
        "{out}"
    );
}

#[test]
fn every_good_fixture_exits_0_without_problems() {
    let dir = fixture("");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !name.ends_with(".hl7") || name.starts_with("broken_") {
            continue;
        }
        let (code, out) = inspect(&[path.as_os_str()]);
        assert_eq!(code, 0, "{name}:\n{out}");
        assert!(problem_lines(&out).is_empty(), "{name}:\n{out}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures");
}

#[test]
fn unknown_segments_print_field_numbers_and_lines_count_from_the_file_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("two.hl7");
    std::fs::write(
        &path,
        "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|ONE|P|2.5.1\n\
         ZPI|x^y~z|\\F\\\n\
         \n\
         MSH|^~\\&|A|B|C|D|20260101||ADT^A08|TWO|P|2.5.1\n\
         P!D|1\n",
    )
    .expect("write");
    let (code, out) = inspect(&[path.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "ZPI (line 2)",
        "  ZPI-1",
        "    [1] x^y",
        "        .1: x",
        "        .2: y",
        "    [2] z",
        "  ZPI-2: |",
        "! line 5, column 2: segment name \"P!D\" is not 3 uppercase letters or digits",
    ] {
        assert!(
            out.lines().any(|l| l == expected),
            "missing {expected:?} in\n{out}"
        );
    }
    assert!(
        out.contains("two.hl7, 2 of 2): ADT^A08 control ID TWO"),
        "{out}"
    );
}

#[test]
fn json_gives_the_same_tree_one_object_per_message() {
    let (code, out) = inspect(&[
        std::ffi::OsStr::new("--json"),
        fixture("oru_r01_v251.hl7").as_os_str(),
        fixture("broken_truncated_msh.hl7").as_os_str(),
    ]);
    assert_eq!(code, 1, "{out}");
    let messages: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(messages.len(), 2);
    let oru = &messages[0];
    assert_eq!(oru["type"], "ORU^R01");
    assert_eq!(oru["control_id"], "FX-ORU-R01-251");
    assert_eq!(oru["problems"], serde_json::json!([]));
    let pid = oru["segments"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["segment"] == "PID"))
        .expect("PID");
    let pid5 = pid["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["field"] == 5))
        .expect("PID-5");
    assert_eq!(pid5["name"], "Patient Name");
    let family = &pid5["repetitions"][0]["components"][0];
    assert_eq!(family["name"], "Family Name");
    assert_eq!(family["value"], "TESTPATIENT");
    assert_eq!(
        messages[1]["problems"][0],
        serde_json::json!({
            "line": 1,
            "column": 61,
            "problem": "MSH-9 Message Type is missing: the MSH segment ends after MSH-7"
        })
    );
}

/// Snapshots: the whole tree of representative fixtures, compared with
/// `tests/golden/inspect/<fixture>.txt`. After an intended change run
/// `HL7BRIDGE_BLESS=1 cargo test --test inspect` and review the diff.
#[test]
fn inspect_output_matches_its_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inspect");
    let bless = std::env::var("HL7BRIDGE_BLESS").is_ok_and(|v| v == "1");
    let mut checked = 0;
    for name in [
        "oru_r01_v251.hl7",
        "adt_a01_v251.hl7",
        "adt_a01_latin1.hl7",
        "batch_fhs_bhs.hl7",
        "broken_bad_encoding_chars.hl7",
    ] {
        let (_, out) = inspect_fixture(name);
        // The fixture path differs per checkout; the snapshot keeps the name.
        let out = out.replace(&fixture("").display().to_string(), "fixtures/");
        let snap = dir.join(name.replace(".hl7", ".txt"));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&snap, &out).unwrap();
        }
        let want = std::fs::read_to_string(&snap)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with HL7BRIDGE_BLESS=1)", snap.display()));
        assert_eq!(out, want, "inspect {name} differs from {}", snap.display());
        checked += 1;
    }
    assert_eq!(checked, 5);
}
