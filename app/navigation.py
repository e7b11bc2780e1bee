"""The dashboard's pages: URL path -> (page file, title), shared by the navigation and the web server."""

PAGES = {
    "train": ("pages/train_page.py", "Train"),
    "history": ("pages/history_page.py", "History"),
    "playground": ("pages/playground_page.py", "Playground"),
    "evaluate": ("pages/evaluate_page.py", "Evaluate"),
    "interpret": ("pages/interpret_page.py", "Interpret"),
    "compare": ("pages/compare_page.py", "Compare"),
    "study": ("pages/study_page.py", "Augmentation study"),
}
