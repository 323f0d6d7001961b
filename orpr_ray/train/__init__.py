"""orpr_ray.train"""
