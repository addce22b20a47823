"""`python -m app --logdir runs`: serve the dashboard."""

from app.cli import main

if __name__ == "__main__":
    main()
