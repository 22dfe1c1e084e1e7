"""The foundation every layer uses: errors, the version, image conversions and grids, precision."""
