"""cifar-tui's Textual dashboard. Widgets render plain event values; torch stays in engine/."""
