"""orpr_ray.evaluate"""
