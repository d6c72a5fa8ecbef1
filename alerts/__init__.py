"""Who is told, how often and how: alert records, message formats and delivery to sinks."""
