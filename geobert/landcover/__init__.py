"""Land-cover mapping: train from a polygon layer, classify scenes, hand planners a map."""
