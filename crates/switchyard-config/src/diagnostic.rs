//! Errors and warnings found while reading a configuration.

use std::fmt;

use crate::model::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding, printed as `FILE:LINE: message` for errors and `FILE:LINE: warning: message`
/// for warnings, the shape editors and CI annotators recognise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Warning => write!(f, "{}: warning: {}", self.span, self.message),
            Severity::Error => write!(f, "{}: {}", self.span, self.message),
        }
    }
}

/// All errors of a failed parse (warnings included, so nothing is lost).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn render(items: &[Diagnostic]) -> String {
    items
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
