//! Where the pipeline keeps its records (filled in by the repository work of issue 3).
