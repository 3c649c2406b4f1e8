//! JUnit XML, one test case per execution, named by its fault combination,
//! so that CI systems list each combination as a test of its own and
//! follow it from run to run.

use std::{io::Write, path::Path};

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{RunSummary, describe_faults};

pub fn write_junit(run: &RunSummary, path: &Path) -> Result<()> {
    let mut suite = TestSuite::new(format!("filibuster {}", run.config.display()));
    for (finished, result) in run.executions.iter().zip(run.results) {
        let status = if result.passed {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(&result.verdict);
            let replay = run
                .failures
                .iter()
                .find(|f| f.number == finished.number)
                .map(|f| format!("\n\nreplay: {}", f.replay))
                .unwrap_or_default();
            status.set_description(format!("{}{replay}", result.output));
            status
        };
        // Named by what it injects, not by its number, which changes from
        // run to run: CI history follows a combination across runs.
        let name = match finished.faults.len() {
            0 => "no fault injected".to_string(),
            _ => describe_faults(&finished.faults),
        };
        let mut case = TestCase::new(name, status);
        case.set_classname("filibuster").set_time(result.duration);
        suite.add_test_case(case);
    }
    if let Some(error) = run.error {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(error);
        let mut case = TestCase::new("filibuster run", status);
        case.set_classname("filibuster");
        suite.add_test_case(case);
    }
    suite.set_time(run.elapsed);
    let mut report = Report::new("filibuster");
    report.add_test_suite(suite).set_time(run.elapsed);
    let xml = report
        .to_string()
        .context("cannot serialise the JUnit report")?;
    crate::json_file::replace(path, "JUnit report", |file| file.write_all(xml.as_bytes()))
}
