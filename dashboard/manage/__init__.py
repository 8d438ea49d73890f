"""The management page's tabs: each module holds one form's layout and callbacks."""
