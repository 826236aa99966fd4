"""Rules files into the model: the field table, loading, validation, file checks, schema."""
