"""Local process orchestration, PACS configuration and the demo."""
