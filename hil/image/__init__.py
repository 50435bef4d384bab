"""Guest images that hil builds itself (the reference Linux guest) and the formats they need."""
