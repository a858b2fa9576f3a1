"""Where analytics records are kept and read back: schema and migrations, the buffered writer, readers, live files."""
