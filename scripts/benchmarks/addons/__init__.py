"""Scripts that mitmdump loads with -s beside (or instead of) the addon."""
