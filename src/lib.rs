//! weight-audit: reproducible, signed audits of LLM weight provenance.
pub mod lab;
