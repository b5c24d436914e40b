"""Dashboard panes. They render plain values from tui.state.RunState; none imports torch."""
