//! JUnit XML, one test case per execution, named by its fault combination,
//! so that CI systems list each combination as a test of its own and
//! follow it from run to run.

use std::{io::Write, path::Path, time::Duration};

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{RunReport, describe_faults};

pub fn write_junit(run: &RunReport, path: &Path) -> Result<()> {
    let mut suite = TestSuite::new(format!("filibuster {}", run.config.display()));
    for execution in &run.execution_log {
        let status = if execution.passed() {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(&execution.result);
            if let Some(failure) = run.failures.iter().find(|f| f.number == execution.number) {
                status.set_description(format!(
                    "{}\n\nreplay: {}",
                    failure.test_output, failure.replay
                ));
            }
            status
        };
        // Named by what it injects, not by its number, which changes from
        // run to run: CI history follows a combination across runs.
        let name = match execution.faults.len() {
            0 => "no fault injected".to_string(),
            _ => describe_faults(&execution.faults),
        };
        let mut case = TestCase::new(name, status);
        case.set_classname("filibuster")
            .set_time(Duration::from_secs_f64(execution.seconds));
        suite.add_test_case(case);
    }
    if let Some(error) = &run.error {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(error);
        let mut case = TestCase::new("filibuster run", status);
        case.set_classname("filibuster");
        suite.add_test_case(case);
    }
    let elapsed = Duration::from_secs_f64(run.elapsed_seconds);
    suite.set_time(elapsed);
    let mut report = Report::new("filibuster");
    report.add_test_suite(suite).set_time(elapsed);
    let xml = report
        .to_string()
        .context("cannot serialise the JUnit report")?;
    crate::json_file::replace(path, "JUnit report", |file| file.write_all(xml.as_bytes()))
}
