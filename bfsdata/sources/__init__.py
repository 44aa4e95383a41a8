"""What users bring: raw strip folders, labels.csv, image folders and image files."""
