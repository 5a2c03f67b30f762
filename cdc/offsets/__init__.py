"""Source-side progress: which events are durable, and where a source resumes."""
